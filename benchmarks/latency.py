"""Kafka-timestamp-to-Iceberg-commit latency of a Bronze stream, for the benchmarks."""

from __future__ import annotations

import threading

import numpy as np

from k2.lake.catalog import load_catalog
from k2.lake.snapshots import appends
from k2.lake.tables import bronze_table
from k2.monitoring.metrics import added_files, read_columns
from k2.settings import Settings


class LatencyCollector:
    """Kafka-timestamp-to-commit latency of every row committed after ``since``, read from each
    append snapshot's own manifests as it appears (every 30 s). Reading the table once at the end
    loses rows: the streams expire their snapshots after K2_BRONZE_SNAPSHOT_RETENTION_S and merge
    their manifests every K2_BRONZE_EXPIRE_EVERY_S (a merged manifest lists its files as existing,
    no longer as added), and maintenance may compact the files."""

    def __init__(self, settings: Settings, exchange: str, since_ms: int, every_s: float = 30.0) -> None:
        self.settings, self.exchange, self.since_ms, self.every_s = settings, exchange, since_ms, every_s
        self.seen: set[int] = set()
        self.parts: list[np.ndarray] = []
        self.stopped = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self.stopped.wait(self.every_s):
            self.collect()

    def collect(self) -> None:
        table = load_catalog(self.settings.lake).load_table(bronze_table(self.exchange).identifier)
        for snapshot in appends(table, self.since_ms):
            if snapshot.snapshot_id in self.seen:
                continue
            self.seen.add(snapshot.snapshot_id)
            for path in added_files(table, snapshot):
                ts = read_columns(table, path, ["kafka_timestamp"]).column(0).cast("int64").to_numpy() // 1000
                ts = ts[ts >= self.since_ms]
                self.parts.append(np.stack([ts, snapshot.timestamp_ms - ts]))

    def summary(self, until_ms: int) -> dict:
        """The rows produced in [since, until): over the window and per minute."""
        self.stopped.set()
        self.thread.join(60)
        self.collect()  # the window's last commits
        rows = np.concatenate(self.parts, axis=1) if self.parts else np.empty((2, 0), dtype=np.int64)
        rows = rows[:, rows[0] < until_ms]
        if not rows.shape[1]:
            return {"rows": 0}
        lat = rows[1] / 1000
        minutes = (rows[0] - self.since_ms) // 60_000
        per_minute = [
            round(float(np.percentile(lat[minutes == m], 99)), 2) if (minutes == m).any() else None
            for m in range(int(np.ceil((until_ms - self.since_ms) / 60_000)))
        ]
        return {
            "rows": int(lat.size),
            "p50_s": round(float(np.percentile(lat, 50)), 2),
            "p99_s": round(float(np.percentile(lat, 99)), 2),
            "max_s": round(float(lat.max()), 2),
            "p99_per_minute_s": per_minute,
        }
