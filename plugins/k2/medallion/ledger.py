"""The medallion ledger (``ops.medallion_ledger``): one row per piece of Bronze ingestion time a
layer processed, with its accounting. It tells a run what is left to do (k2.medallion.coverage)
and tells monitoring how much of Bronze has been reconciled. Read and written through pyiceberg,
so the sensor and monitoring use it without a JVM."""

from __future__ import annotations

import datetime as dt
import time
from dataclasses import asdict, dataclass

from k2.lake import appends
from k2.lake.current import derived, tables_of
from k2.lake.tables import MEDALLION_LEDGER, bronze_table
from k2.medallion.coverage import Piece, Range, plan
from k2.medallion.interval import Interval
from k2.settings import LakeSettings, Settings


@dataclass(frozen=True)
class LedgerEntry:
    layer: str
    exchange: str
    range_start: dt.datetime
    range_end: dt.datetime
    rerun: bool
    bronze_rows: int = 0
    items: int = 0
    silver_new: int = 0
    duplicates: int = 0
    dead_letters: int = 0
    bars: int = 0
    finished_at: dt.datetime | None = None


def _table(lake: LakeSettings):
    from k2.lake.catalog import load_catalog

    return load_catalog(lake).load_table(MEDALLION_LEDGER.identifier)


def _all_entries(lake: LakeSettings) -> list[LedgerEntry]:
    """Every entry, read once per version of the ledger. Each recorded piece adds a small data file
    until the daily compaction, and a read opens those of its layer and exchange (232 ms idle after
    96 hourly runs, benchmarks/ledger_read.py), while a query server reads the ledger every few
    seconds and at every bars query."""
    table = tables_of(lake).load(MEDALLION_LEDGER.identifier)
    return derived(table, "entries", lambda t: [LedgerEntry(**row) for row in t.scan().to_arrow().to_pylist()])


def entries(lake: LakeSettings, layer: str, exchange: str) -> list[LedgerEntry]:
    return [e for e in _all_entries(lake) if e.layer == layer and e.exchange == exchange]


def covered(lake: LakeSettings, layer: str, exchange: str) -> list[Range]:
    return [(e.range_start, e.range_end) for e in entries(lake, layer, exchange)]


def record(lake: LakeSettings, entry: LedgerEntry, attempts: int = 20) -> None:
    """Appends one entry. Sensors, jobs and monitoring commit to the catalog concurrently: a commit
    that lost the race is retried on the table's new state."""
    import pyarrow as pa
    from pyiceberg.exceptions import CommitFailedException

    row = asdict(entry) | {"finished_at": entry.finished_at or dt.datetime.now(dt.UTC)}
    for attempt in range(attempts):
        table = _table(lake)
        try:
            appends.append(table, pa.Table.from_pylist([row], schema=table.schema().as_arrow()))
            return
        except CommitFailedException:
            if attempt == attempts - 1:
                raise
            time.sleep(min(2.0, 0.05 * 2**attempt))


def first_ingestion(lake: LakeSettings, exchange: str) -> dt.datetime | None:
    """The earliest ``ingested_at`` in Bronze, from the data files' column bounds (no data read)."""
    from pyiceberg.conversions import from_bytes

    from k2.lake.catalog import load_catalog

    table = load_catalog(lake).load_table(bronze_table(exchange).identifier)
    column = table.schema().find_field("ingested_at")
    bounds = [
        from_bytes(column.field_type, task.file.lower_bounds[column.field_id])
        for task in table.scan(selected_fields=("ingested_at",)).plan_files()
        if column.field_id in (task.file.lower_bounds or {})
    ]
    return dt.datetime.fromtimestamp(min(bounds) / 1e6, dt.UTC) if bounds else None


def todo(
    lake: LakeSettings, layer: str, interval: Interval, *, catch_up: bool, max_pieces: int
) -> tuple[list[Piece], int]:
    """The pieces a run of ``layer`` over ``interval`` processes now, and how many more a catch-up
    leaves to the next runs (k2.medallion.coverage.plan)."""
    own = covered(lake, layer, interval.exchange)
    origin = first_ingestion(lake, interval.exchange) if catch_up else None
    upstream = covered(lake, "silver", interval.exchange) if catch_up and layer == "gold" else None
    work = plan((interval.start, interval.end), own, catch_up=catch_up, origin=origin, upstream=upstream)
    return work[:max_pieces], max(0, len(work) - max_pieces)


def settle_if_empty(settings: Settings, interval: Interval, *, catch_up: bool) -> bool:
    """True, with the pieces recorded as done for both layers, when every piece a run of the
    interval would process holds no Bronze row (an hour without data needs no Spark job)."""
    from k2.medallion.settle import bronze_rows_per_piece

    cap = settings.batch.catch_up_max_pieces

    def empty(work: list[Piece], left: int) -> bool:
        return not left and not any(bronze_rows_per_piece(settings, interval.exchange, work))

    silver, silver_left = todo(settings.lake, "silver", interval, catch_up=catch_up, max_pieces=cap)
    gold, gold_left = todo(settings.lake, "gold", interval, catch_up=catch_up, max_pieces=cap)  # Gold owes
    if not (empty(silver, silver_left) and empty(gold, gold_left)):
        return False
    for layer in ("silver", "gold"):
        for piece in silver:
            record(settings.lake, LedgerEntry(layer, interval.exchange, piece.start, piece.end, piece.rerun))
    return True
