"""What an answer lacks, said with it: K2 answers from what it can read (Kafka out of reach leaves the
lake) and names the rest, as a warning to the caller and as notes in the table's schema metadata,
which cross the query server's socket with the table."""

from __future__ import annotations

import json

import pyarrow as pa

from k2.errors import K2Error

PARTIAL_KEY = b"k2.partial"  # schema metadata: the notes of a partial answer, as JSON


class PartialAnswer(K2Error, UserWarning):
    """An answer without a part K2 could not read: the Kafka tail past Bronze's last commit, while the
    broker is out of reach. Warned by ``k2.query``; ``warnings.simplefilter("error", PartialAnswer)``
    (``k2 query trades --complete``) raises it instead."""


PARTIAL_KEY = b"k2.partial"  # schema metadata: the notes of a partial answer, as JSON


def noted(table: pa.Table, notes: list[PartialAnswer]) -> pa.Table:
    """``table`` carrying ``notes`` (and those it carried) in its schema metadata: they cross the
    query server's socket with it."""
    every = _unique([*partial_notes(table), *notes])
    if not every:
        return table
    text = json.dumps([{"cause": n.cause, "fix": n.fix} for n in every])
    return table.replace_schema_metadata({**(table.schema.metadata or {}), PARTIAL_KEY: text.encode()})


def partial_notes(table: pa.Table) -> list[PartialAnswer]:
    """What a partial answer lacks, from its schema metadata (none for a whole answer)."""
    text = (table.schema.metadata or {}).get(PARTIAL_KEY)
    return [PartialAnswer(n["cause"], n["fix"]) for n in json.loads(text)] if text else []


def _unique(notes: list[PartialAnswer]) -> list[PartialAnswer]:
    return list({(n.cause, n.fix): n for n in notes}.values())
