"""Reconciliation, per exchange, each monitoring run: records the stream committed from Kafka vs
Bronze rows vs the rows Silver accounted for (new trades, duplicates, dead letters; the medallion
ledger) plus the rows still waiting, and the age of the oldest waiting one. Metadata only: Iceberg
file bounds and counts, the stream's progress file, the ledger.

``bronze_gap_rows`` > 0: Kafka records the stream committed that Bronze does not hold.
``silver_gap_rows`` > 0: Bronze rows neither accounted for by Silver nor waiting for it (a range
processed before all its rows were in Bronze, or rows lost on the way).
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from k2.medallion.coverage import Range, merge, subtract
from k2.settings import Settings


@dataclass(frozen=True)
class Reconciliation:
    kafka_committed: int | None  # records the stream committed (its progress file's offsets)
    bronze_rows: int
    silver_accounted_rows: int  # Bronze rows of every range Silver processed
    unprocessed_rows: int  # Bronze rows ingested in ranges Silver has not processed yet
    unprocessed_age_s: float | None  # age of the oldest of them (0: none waits)

    @property
    def bronze_gap_rows(self) -> int | None:
        return None if self.kafka_committed is None else self.kafka_committed - self.bronze_rows

    @property
    def silver_gap_rows(self) -> int:
        return self.bronze_rows - self.silver_accounted_rows - self.unprocessed_rows


def reconcile(settings: Settings, exchange: str, now: float) -> Reconciliation:
    from k2.kafka.lag import committed_offsets
    from k2.lake.catalog import load_catalog
    from k2.lake.tables import bronze_table
    from k2.medallion import ledger
    from k2.streams.control import read_doc

    # progress before Bronze: a commit landing in between shows as a surplus, never as a loss
    progress = read_doc(settings, exchange, "progress")
    kafka = sum(committed_offsets(progress, settings.topic_for(exchange)).values()) if progress else None
    entries = [e for e in ledger.entries(settings.lake, "silver", exchange) if not e.rerun]
    covered = merge((e.range_start, e.range_end) for e in entries)
    table = load_catalog(settings.lake).load_table(bronze_table(exchange).identifier)
    snapshot = table.current_snapshot()
    bronze = int(snapshot.summary["total-records"]) if snapshot and snapshot.summary else 0
    rows, oldest = _waiting(table, covered, dt.datetime.fromtimestamp(now, dt.UTC))
    age = 0.0 if not rows else None if oldest is None else round(max(0.0, now - oldest.timestamp()), 1)
    return Reconciliation(kafka, bronze, sum(e.bronze_rows for e in entries), rows, age)


def _waiting(table, covered: list[Range], now: dt.datetime) -> tuple[int, dt.datetime | None]:
    """Bronze rows ingested outside ``covered`` and the oldest one's time. Files wholly outside are
    counted from metadata; a file straddling an edge (a compaction) has its column read."""
    from pyiceberg.conversions import from_bytes
    from pyiceberg.expressions import And, GreaterThanOrEqual, LessThan, Or

    beginning = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)
    open_ranges = subtract([(beginning, now + dt.timedelta(days=1))], covered)
    if not open_ranges:
        return 0, None
    condition = None
    for start, end in open_ranges:
        part = And(GreaterThanOrEqual("ingested_at", start.isoformat()), LessThan("ingested_at", end.isoformat()))
        condition = part if condition is None else Or(condition, part)
    column = table.schema().find_field("ingested_at")
    rows, oldest = 0, None
    for task in table.scan(row_filter=condition, selected_fields=("ingested_at",)).plan_files():
        f = task.file
        lo = from_bytes(column.field_type, f.lower_bounds[column.field_id])
        hi = from_bytes(column.field_type, f.upper_bounds[column.field_id])
        lo, hi = (dt.datetime.fromtimestamp(v / 1e6, dt.UTC) for v in (lo, hi))
        if any(s <= lo and hi < e for s, e in open_ranges):
            rows, first = rows + f.record_count, lo
        else:
            count, first = _count_outside(table, f.file_path, covered)
            rows += count
        if first is not None and (oldest is None or first < oldest):
            oldest = first
    return rows, oldest


def _count_outside(table, path: str, covered: list[Range]) -> tuple[int, dt.datetime | None]:
    from k2.monitoring.metrics import read_columns

    stamps = read_columns(table, path, ["ingested_at"]).column("ingested_at").to_pylist()
    outside = [t for t in stamps if t is not None and not any(s <= t < e for s, e in covered)]
    return len(outside), min(outside, default=None)
