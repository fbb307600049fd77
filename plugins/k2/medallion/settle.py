"""Is Bronze complete for an interval of ingestion time? Only then may Silver read it.

Batches select Bronze rows by ``ingested_at``, the micro-batch's time (Spark's batch timestamp,
kept in the offset log, so a batch re-run after a crash keeps it). Micro-batches run one after
another, so once the stream reports a trigger that started at or after ``end`` (a batch's
progress, or a trigger that found no new data), every row with ``ingested_at < end`` is committed:
no later row can carry an earlier time. Producer clocks play no part.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from k2.settings import Settings
from k2.streams.state import StreamPaths, read_json


@dataclass(frozen=True)
class Settlement:
    settled: bool
    detail: str


def _moment(value: object) -> dt.datetime | None:
    if isinstance(value, (int, float)):
        return dt.datetime.fromtimestamp(value, dt.UTC)
    if isinstance(value, str) and value:
        return dt.datetime.fromisoformat(value.replace("Z", "+00:00"))
    return None


def last_trigger(settings: Settings, exchange: str) -> dt.datetime | None:
    """Start of the stream's latest finished trigger: its last batch's, or its last idle one's."""
    paths = StreamPaths.of(settings, exchange)
    batch = _moment((read_json(paths.progress) or {}).get("timestamp"))
    idle = _moment((read_json(paths.idle) or {}).get("trigger_at"))
    known = [m for m in (batch, idle) if m is not None]
    return max(known) if known else None


def bronze_settlement(settings: Settings, exchange: str, end: dt.datetime) -> Settlement:
    trigger = last_trigger(settings, exchange)
    if trigger is not None and trigger >= end:
        return Settlement(
            True,
            f"Bronze {exchange} holds every record ingested before {end.isoformat()} "
            f"(the stream's last trigger started {trigger.isoformat()})",
        )
    seen = trigger.isoformat() if trigger else "none yet"
    return Settlement(
        False,
        f"Bronze {exchange}: waiting for the stream's first trigger at or after {end.isoformat()} "
        f"(last: {seen}); `k2 status` shows whether the stream runs",
    )


def bronze_rows_at_most(settings: Settings, exchange: str, start: dt.datetime, end: dt.datetime) -> int:
    """An upper bound of Bronze rows ingested in [start, end), from Iceberg metadata alone (the
    files' column bounds prune them): 0 means the interval is empty."""
    from pyiceberg.expressions import And, GreaterThanOrEqual, LessThan

    from k2.lake.catalog import load_catalog
    from k2.lake.tables import bronze_table

    table = load_catalog(settings.lake).load_table(bronze_table(exchange).identifier)
    scan = table.scan(
        row_filter=And(GreaterThanOrEqual("ingested_at", start.isoformat()), LessThan("ingested_at", end.isoformat()))
    )
    return sum(task.file.record_count for task in scan.plan_files())
