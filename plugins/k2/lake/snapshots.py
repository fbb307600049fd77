"""What a table's snapshot log says about its writers, read from metadata (no data file opened)."""

from __future__ import annotations

from typing import Any


def appends(table: Any, since_ms: float = 0, *, with_rows: bool = False) -> list[Any]:
    """The table's append snapshots committed at or after ``since_ms``; ``with_rows``: only those
    that added rows (a stream's empty micro-batch may commit an append without any)."""
    return [
        s
        for s in table.snapshots()
        if s.timestamp_ms >= since_ms
        and s.summary is not None
        and s.summary.operation.value == "append"
        and (not with_rows or int(s.summary.get("added-records") or 0) > 0)  # pyiceberg's get ignores a default
    ]
