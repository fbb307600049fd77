"""Per-exchange stream metrics, measured without Spark: from the Bronze table's Iceberg snapshots,
Kafka, and the small state files the stream and its supervisor write.

Latency is per row: the commit time of the snapshot that added the row's data file minus the row's
Kafka timestamp (and minus its exchange event time, parsed from a bounded sample of payloads).
"""

from __future__ import annotations

import datetime as dt
import random
import time
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from k2.docstore import opened
from k2.log import get_logger
from k2.settings import Settings
from k2.streams.control import read_doc

if TYPE_CHECKING:
    from k2.medallion.reports import SilverReport

log = get_logger(__name__)

EVENT_TIME_SAMPLE = 5_000  # payloads parsed per exchange and run: percentiles need no more


@dataclass
class StreamMetrics:
    exchange: str
    measured_at: float
    stream_state: str
    window_s: float
    rows_committed: int = 0
    kafka_latency_p50_s: float | None = None
    kafka_latency_p95_s: float | None = None
    kafka_latency_p99_s: float | None = None
    event_latency_p50_s: float | None = None
    event_latency_p95_s: float | None = None
    event_latency_p99_s: float | None = None
    latency_p99_s: float | None = None
    lag_messages: int | None = None
    lag_s: float | None = None
    freshness_s: float | None = None
    throughput_rows_per_s: float | None = None
    restarts_1h: int | None = None
    dead_letter_ratio: float | None = None
    # reconciliation (k2.monitoring.reconcile)
    kafka_committed: int | None = None
    bronze_rows: int | None = None
    silver_accounted_rows: int | None = None
    unprocessed_rows: int | None = None
    unprocessed_age_s: float | None = None
    bronze_gap_rows: int | None = None
    silver_gap_rows: int | None = None
    # trade-id gaps the batch recorded and no later trade filled (ops.trade_gaps, k2.gaps)
    open_gaps: int | None = None
    missing_trades: int | None = None

    def alerting_values(self) -> dict[str, float | None]:
        from k2.monitoring.thresholds import DEFAULTS

        return {metric: getattr(self, metric) for metric in DEFAULTS}

    def row(self) -> dict[str, Any]:
        out = asdict(self)
        out["measured_at"] = dt.datetime.fromtimestamp(self.measured_at, dt.UTC)
        return out


def measure(settings: Settings, exchange: str, now: float | None = None) -> StreamMetrics:
    from k2.streams.supervisor import StreamSupervisor

    now = time.time() if now is None else now
    lag_messages, lag_s = kafka_lag(settings, exchange)
    supervisor = StreamSupervisor(settings, exchange)
    try:
        report = supervisor.inspect(known_lag=lag_messages)  # Kafka is asked once per exchange
    finally:
        supervisor.close()
    m = StreamMetrics(
        exchange,
        now,
        report.state,
        settings.alerts.monitor_window_s,
        restarts_1h=report.restarts_last_hour,
        lag_messages=lag_messages,
        lag_s=lag_s,
    )
    _from_bronze(settings, m, now)
    if m.lag_messages == 0 and m.freshness_s is not None:
        # nothing waits in Kafka: Bronze is as fresh as the topic. A quiet topic (feeds stopped, a
        # slow market) is not a stale stream; a stream behind shows a lag and its age instead.
        m.freshness_s = 0.0
    m.latency_p99_s = alerting_latency(m.kafka_latency_p99_s, m.lag_messages, m.lag_s)
    m.dead_letter_ratio = _dead_letter_ratio(settings, exchange)
    _reconcile(settings, m, now)
    _gaps(settings, m)
    return m


def _gaps(settings: Settings, m: StreamMetrics) -> None:
    from k2.gaps.store import open_gap_rows

    try:
        rows = open_gap_rows(settings, m.exchange)
    except Exception as exc:  # unknown, not 0: an unknown value neither opens nor resolves an incident
        log.error("monitor.gaps_failed", exchange=m.exchange, error=f"{type(exc).__name__}: {exc}")
        return
    m.open_gaps, m.missing_trades = len(rows), sum(r["missing_count"] for r in rows)


def alerting_latency(committed_p99_s: float | None, waiting: int | None, waiting_age_s: float | None) -> float | None:
    """The larger of the committed rows' p99 and the age of the records still waiting (a stream that
    stopped committing shows how late it is). None when the window committed no row and nothing
    waits: no data is not a latency of 0 s, which would resolve an open latency incident."""
    known = [] if committed_p99_s is None else [committed_p99_s]
    if waiting and waiting_age_s is not None:  # lag_s is 0.0 when nothing waits: no measurement
        known.append(waiting_age_s)
    return max(known) if known else None


def _reconcile(settings: Settings, m: StreamMetrics, now: float) -> None:
    from k2.monitoring.reconcile import reconcile

    try:
        r = reconcile(settings, m.exchange, now)
    except Exception as exc:  # the stream's own metrics still count: report what could not be reconciled
        log.error("monitor.reconcile_failed", exchange=m.exchange, error=f"{type(exc).__name__}: {exc}")
        return
    m.kafka_committed, m.bronze_rows, m.silver_accounted_rows = (
        r.kafka_committed,
        r.bronze_rows,
        r.silver_accounted_rows,
    )
    m.unprocessed_rows, m.unprocessed_age_s = r.unprocessed_rows, r.unprocessed_age_s
    m.bronze_gap_rows, m.silver_gap_rows = r.bronze_gap_rows, r.silver_gap_rows


def _from_bronze(settings: Settings, m: StreamMetrics, now: float) -> None:
    from k2.exchanges import get_exchange
    from k2.lake.catalog import load_catalog
    from k2.lake.snapshots import appends
    from k2.lake.tables import bronze_table

    table = load_catalog(settings.lake).load_table(bronze_table(m.exchange).identifier)
    commits = appends(table)
    if not commits:
        return
    # measured against the clock now, not the run's start: commits keep landing while we read
    m.freshness_s = round(max(0.0, time.time() - max(s.timestamp_ms for s in commits) / 1000), 3)
    recent = appends(table, (now - m.window_s) * 1000)
    kafka_lat, event_lat = [], []
    sample_left = EVENT_TIME_SAMPLE
    exchange = get_exchange(m.exchange)
    for snapshot in recent:
        commit_us = snapshot.timestamp_ms * 1000
        for path in added_files(table, snapshot):
            # payloads are most of a Bronze file: read only as many as the event-time sample needs
            columns = ["kafka_timestamp", "value"] if sample_left > 0 else ["kafka_timestamp"]
            data = read_columns(table, path, columns)
            kafka_lat.append((commit_us - data.column("kafka_timestamp").cast("int64").to_numpy()) / 1e6)
            if sample_left > 0:
                values = data.column("value").to_pylist()
                picked = random.sample(values, min(sample_left, len(values)))
                sample_left -= len(picked)
                event_lat.append(np.array([(commit_us - t) / 1e6 for v in picked for t in _event_times(exchange, v)]))
    m.rows_committed = int(sum(a.size for a in kafka_lat))
    m.throughput_rows_per_s = round(m.rows_committed / m.window_s, 2)
    for prefix, parts in (("kafka", kafka_lat), ("event", event_lat)):
        values = np.concatenate(parts) if parts else np.array([])
        if values.size:
            for q in (50, 95, 99):
                setattr(m, f"{prefix}_latency_p{q}_s", round(float(np.percentile(values, q)), 3))


def added_files(table: Any, snapshot: Any) -> list[str]:
    """Paths of the data files ``snapshot`` added, from its own manifests: later compactions and
    deletes do not change them."""
    from pyiceberg.manifest import ManifestEntryStatus

    paths = []
    for manifest in snapshot.manifests(table.io):
        if manifest.added_snapshot_id != snapshot.snapshot_id:
            continue
        for entry in manifest.fetch_manifest_entry(table.io, discard_deleted=True):
            if entry.status == ManifestEntryStatus.ADDED:
                paths.append(entry.data_file.file_path)
    return paths


def read_columns(table: Any, path: str, columns: list[str]) -> Any:
    """Some columns of one data file (a pyarrow Table)."""
    import pyarrow.parquet as pq

    with table.io.new_input(path).open() as fh:
        return pq.read_table(fh, columns=columns)


def _event_times(exchange: Any, payload: bytes | None) -> list[int]:
    if payload is None:
        return []
    try:
        return exchange.event_times_us(payload)
    except ValueError:
        return []  # not a trade message: Silver routes it to the dead letters, latency ignores it


def kafka_lag(
    settings: Settings, exchange: str, consumer: Any = None, *, with_age: bool = True
) -> tuple[int | None, float | None]:
    """Records in Kafka the stream has not committed, and the age of the oldest of them (0 when none
    waits; None without ``with_age``, which spares a fetch per lagging partition), from one look at
    the offsets; (None, None) when Kafka cannot be asked. ``consumer`` (one ``offsets_consumer`` of
    the stream's group, kept by a caller that samples often) is used and left open; without it one
    is made and closed."""
    from k2.kafka.groups import bronze_group, group_offsets
    from k2.kafka.lag import committed_offsets, measure_lag, offsets_consumer

    topic = settings.topic_for(exchange)
    owned = consumer is None
    if owned:
        consumer = offsets_consumer(settings.kafka, bronze_group(exchange))
    try:
        # the stream's offsets as it published them to Kafka (any host reads them), else its progress file
        try:
            committed = group_offsets(consumer, topic)
        except Exception:  # Kafka unreachable: measure_lag says so below
            committed = {}
        if not committed:
            committed = committed_offsets(read_doc(settings, exchange, "progress") or {}, topic)
        lag = measure_lag(consumer, topic, committed, with_age=with_age)
    finally:
        if owned:
            consumer.close()
    return (None, None) if lag is None else (lag.records, lag.oldest_age_s)


# --- dead-letter ratio: written by the Silver job, read here -------------------------------------
def record_silver_run(settings: Settings, report: SilverReport) -> None:
    """Keep the newest interval's Silver accounting (re-runs of older intervals do not replace it)."""
    from k2.monitoring.shared import monitoring_docs

    with opened(monitoring_docs(settings)) as docs, docs.exclusive("silver", wait=True):
        current = docs.read(f"silver/{report.exchange}")
        if current is None or current.get("end", "") <= report.end:
            docs.write(
                f"silver/{report.exchange}",
                {
                    "exchange": report.exchange,
                    "start": report.start,
                    "end": report.end,
                    "items": report.items,
                    "dead_letters": report.dead_letters,
                },
            )


def _dead_letter_ratio(settings: Settings, exchange: str) -> float | None:
    from k2.monitoring.shared import monitoring_docs

    with opened(monitoring_docs(settings)) as docs:
        stats = docs.read(f"silver/{exchange}")
    if not stats or not stats.get("items"):
        return None
    return round(stats["dead_letters"] / stats["items"], 6)
