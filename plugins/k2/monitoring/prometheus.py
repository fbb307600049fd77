"""Prometheus text exposition of the latest metrics.

Written atomically to ``$K2_HOME/monitoring/k2.prom`` for node_exporter's textfile collector and
served at ``/k2/metrics`` on the Airflow API server (see ``k2.airflow.plugin``).
"""

from __future__ import annotations

from collections.abc import Iterable

from k2.docstore import DocStore
from k2.monitoring.incidents import SEVERITY_RANK, Incident
from k2.monitoring.metrics import StreamMetrics
from k2.settings import Settings

GAUGES = {
    "kafka_latency_p50_s": "Kafka timestamp to Iceberg commit, p50, seconds",
    "kafka_latency_p95_s": "Kafka timestamp to Iceberg commit, p95, seconds",
    "kafka_latency_p99_s": "Kafka timestamp to Iceberg commit, p99, seconds",
    "event_latency_p50_s": "Exchange event time to Iceberg commit, p50, seconds",
    "event_latency_p95_s": "Exchange event time to Iceberg commit, p95, seconds",
    "event_latency_p99_s": "Exchange event time to Iceberg commit, p99, seconds",
    "latency_p99_s": "Alerting latency: max of Kafka-to-commit p99 and the age of waiting records, seconds",
    "lag_messages": "Records in Kafka not yet committed to Bronze",
    "lag_s": "Age of the oldest record not yet committed to Bronze, seconds",
    "freshness_s": "Seconds since Bronze last committed while records wait in Kafka (0: caught up)",
    "throughput_rows_per_s": "Rows committed to Bronze per second over the window",
    "rows_committed": "Rows committed to Bronze in the window",
    "restarts_1h": "Supervisor restarts of the stream in the last hour",
    "dead_letter_ratio": "Share of the last processed hour's records sent to dead letters",
    "kafka_committed": "Kafka records the stream has committed (sum of its offsets)",
    "bronze_rows": "Rows in the Bronze table",
    "silver_accounted_rows": "Bronze rows Silver accounted for: new trades, duplicates, dead letters",
    "unprocessed_rows": "Bronze rows Silver has not processed yet",
    "unprocessed_age_s": "Age of the oldest Bronze row Silver has not processed, seconds",
    "bronze_gap_rows": "Kafka records committed by the stream but missing from Bronze (negative: surplus)",
    "silver_gap_rows": "Bronze rows neither accounted for by Silver nor waiting (negative: surplus)",
    "open_gaps": "Open gaps in the trade ids (ops.trade_gaps): trades never received, not yet filled",
    "missing_trades": "Trades missing from the open gaps in the trade ids",
}


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def render(metrics: Iterable[StreamMetrics], incidents: Iterable[Incident]) -> str:
    metrics, incidents = list(metrics), list(incidents)
    lines: list[str] = []
    for name, help_text in GAUGES.items():
        lines += [f"# HELP k2_stream_{name} {help_text}", f"# TYPE k2_stream_{name} gauge"]
        lines += [
            f'k2_stream_{name}{{exchange="{_escape(m.exchange)}"}} {float(getattr(m, name)):g}'
            for m in metrics
            if getattr(m, name) is not None
        ]
    lines += ["# HELP k2_stream_up 1 when the Bronze stream is running", "# TYPE k2_stream_up gauge"]
    lines += [
        f'k2_stream_up{{exchange="{_escape(m.exchange)}",state="{_escape(m.stream_state)}"}} '
        f"{int(m.stream_state == 'running')}"
        for m in metrics
    ]
    lines += ["# HELP k2_open_incident Open incidents: 1 warning, 2 critical", "# TYPE k2_open_incident gauge"]
    lines += [
        f'k2_open_incident{{exchange="{_escape(i.exchange)}",metric="{_escape(i.metric)}"}} {SEVERITY_RANK[i.severity]}'
        for i in incidents
    ]
    lines += [
        "# HELP k2_monitor_last_run_timestamp_seconds When monitoring last measured",
        "# TYPE k2_monitor_last_run_timestamp_seconds gauge",
        f"k2_monitor_last_run_timestamp_seconds {max((m.measured_at for m in metrics), default=0):.3f}",
    ]
    return "\n".join(lines) + "\n"


def write_textfile(
    settings: Settings, metrics: Iterable[StreamMetrics], incidents: Iterable[Incident], docs: DocStore | None = None
) -> None:
    """``k2.prom`` for a node exporter on this host; with ``docs`` shared beyond it, the same text
    there too, which the API server's /metrics serves on whichever host it runs."""
    from k2.docstore import shared_beyond_host

    text = render(metrics, incidents)
    path = settings.monitoring_dir / "k2.prom"
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".prom.tmp")
    tmp.write_text(text)
    tmp.replace(path)
    if docs is not None and shared_beyond_host(docs):
        docs.write("prometheus", {"text": text})


def latest_text(settings: Settings) -> str | None:
    """The newest Prometheus text monitoring wrote, from the shared documents or this host's file."""
    from k2.docstore import opened, shared_beyond_host
    from k2.monitoring.shared import monitoring_docs

    with opened(monitoring_docs(settings)) as docs:
        if shared_beyond_host(docs):
            return (docs.read("prometheus") or {}).get("text")
    try:
        return (settings.monitoring_dir / "k2.prom").read_text()
    except FileNotFoundError:
        return None
