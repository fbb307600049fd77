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

from k2.medallion.coverage import Piece
from k2.settings import Settings
from k2.streams.control import stream_control


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
    control = stream_control(settings, exchange)
    try:
        batch = _moment((control.read("progress") or {}).get("timestamp"))
        idle = _moment((control.read("idle") or {}).get("trigger_at"))
    finally:
        control.close()
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
    return bronze_rows_per_piece(settings, exchange, [Piece(start, end, rerun=False)])[0]


def bronze_rows_per_piece(settings: Settings, exchange: str, pieces: list[Piece]) -> list[int]:
    """An upper bound of each piece's Bronze rows from one metadata scan: a file counts toward every
    piece its ``ingested_at`` bounds overlap (a file without bounds, toward all of them)."""
    from pyiceberg.conversions import from_bytes
    from pyiceberg.expressions import And, GreaterThanOrEqual, LessThan

    from k2.lake.catalog import load_catalog
    from k2.lake.tables import bronze_table

    if not pieces:
        return []
    table = load_catalog(settings.lake).load_table(bronze_table(exchange).identifier)
    column = table.schema().find_field("ingested_at")
    start, end = min(p.start for p in pieces), max(p.end for p in pieces)
    scan = table.scan(
        row_filter=And(GreaterThanOrEqual("ingested_at", start.isoformat()), LessThan("ingested_at", end.isoformat()))
    )
    micros = [(int(p.start.timestamp() * 1e6), int(p.end.timestamp() * 1e6)) for p in pieces]
    rows = [0] * len(pieces)
    for task in scan.plan_files():
        lower, upper = task.file.lower_bounds or {}, task.file.upper_bounds or {}
        lo = from_bytes(column.field_type, lower[column.field_id]) if column.field_id in lower else None
        hi = from_bytes(column.field_type, upper[column.field_id]) if column.field_id in upper else None
        for i, (p_start, p_end) in enumerate(micros):
            if (lo is None or lo < p_end) and (hi is None or hi >= p_start):
                rows[i] += task.file.record_count
    return rows
