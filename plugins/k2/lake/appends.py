"""Small appends that keep a table's metadata bounded between the daily maintenance runs.

Monitoring appends to ``ops.stream_metrics`` every minute. Each pyiceberg append adds a snapshot
and, by default, a manifest that every later manifest list names: after 720 minutes an append took
476 ms and a read of the last hour 942 ms (benchmarks/ops_appends.py, idle), growing until the
daily maintenance.
Tables declared with ``APPENDED_OFTEN`` merge their small manifests on append (Iceberg's
``commit.manifest-merge.enabled``), and ``append`` expires their snapshots past the table's
``history.expire.*`` properties, as Iceberg's own expiry reads them."""

from __future__ import annotations

import datetime as dt
from typing import TYPE_CHECKING

from k2.log import get_logger

if TYPE_CHECKING:
    import pyarrow as pa
    from pyiceberg.table import Table

log = get_logger(__name__)

MAX_AGE = "history.expire.max-snapshot-age-ms"
MIN_KEPT = "history.expire.min-snapshots-to-keep"
# properties of a table that gets a small append every minute or hour
APPENDED_OFTEN = {
    "commit.manifest-merge.enabled": "true",
    "commit.manifest.min-count-to-merge": "10",  # Iceberg's default, 100, is the day's first 100 minutes
    MAX_AGE: str(3_600_000),  # an hour of time travel; the rows themselves are the history
    MIN_KEPT: "10",
}
EXPIRE_EVERY = 10  # snapshots past the kept ones before an expiry: one commit per ten appends


def append(table: Table, rows: pa.Table) -> None:
    """Appends ``rows``; then, for a table declaring a maximum snapshot age, expires the snapshots
    older than it (keeping the newest ``MIN_KEPT``) once ``EXPIRE_EVERY`` of them are due. The
    expiry is best effort: it only rewrites metadata, and a failed one is retried at a later append."""
    table.append(rows)
    if MAX_AGE not in table.properties:
        return
    keep = int(table.properties.get(MIN_KEPT, "1"))
    cutoff_ms = dt.datetime.now(dt.UTC).timestamp() * 1000 - int(table.properties[MAX_AGE])
    stamps = sorted(s.timestamp_ms for s in table.metadata.snapshots)
    due = [ms for ms in stamps[:-keep] if ms < cutoff_ms]
    if len(due) < EXPIRE_EVERY:
        return
    try:
        table.maintenance.expire_snapshots().older_than(
            dt.datetime.fromtimestamp((due[-1] + 1) / 1000, dt.UTC)
        ).commit()
    except Exception as exc:  # a concurrent commit (the daily maintenance): the next append retries
        log.warning("table.expiry_skipped", table=".".join(table.name()), error=f"{type(exc).__name__}: {exc}")
