"""One monitoring run: measure every stream, keep the history, update incidents, alert.

Order matters for "lose nothing": metrics are measured and written first; incident changes and
their alerts are persisted (incident book, outbox) before any delivery is attempted, so a failing
channel or a crash mid-delivery never loses or repeats an incident.
"""

from __future__ import annotations

import datetime as dt
import json
import time
from dataclasses import asdict, dataclass
from typing import Any

from k2.log import get_logger
from k2.monitoring.alerts import log_and_deliver
from k2.monitoring.incidents import IncidentEvent, IncidentStore
from k2.monitoring.metrics import StreamMetrics, measure
from k2.monitoring.notifiers import Alert, outbox
from k2.monitoring.prometheus import write_textfile
from k2.monitoring.shared import monitoring_docs
from k2.monitoring.thresholds import Thresholds
from k2.settings import Settings

log = get_logger(__name__)


@dataclass
class MonitorResult:
    metrics: list[StreamMetrics]
    events: list[IncidentEvent]
    alerts: list[Alert]
    open_incidents: int
    failures: dict[str, str]  # exchange -> why it could not be measured


def run_monitor(settings: Settings, thresholds: Thresholds, now: float | None = None) -> MonitorResult:
    now = time.time() if now is None else now
    metrics, failures = [], {}
    for exchange in settings.exchanges:
        try:
            metrics.append(measure(settings, exchange, now))
        except Exception as exc:  # one exchange's outage must not blind monitoring of the others
            failures[exchange] = f"{type(exc).__name__}: {exc}"
            log.error("monitor.measure_failed", exchange=exchange, error=failures[exchange])
            metrics.append(StreamMetrics(exchange, now, "unknown", settings.alerts.monitor_window_s))
    _append(settings, "ops.stream_metrics", [m.row() for m in metrics])

    docs = monitoring_docs(settings)
    store = IncidentStore(docs)
    with store.transaction() as book:
        resolve_after = settings.alerts.resolve_after_s
        events = [
            e for m in metrics for e in book.evaluate(m.exchange, m.alerting_values(), thresholds, now, resolve_after)
        ]
        alerts = [
            Alert(e.severity, f"monitor {e.incident.exchange} {e.incident.metric}", e.message, at=e.at) for e in events
        ]
        outbox(settings).add(alerts)
        open_count = len(book.open)
        incidents = list(book.open.values())
    delivered = log_and_deliver(alerts, settings)  # added to the outbox with the incidents above
    _append(settings, "ops.alert_events", [_event_row(e, a) for e, a in zip(events, delivered, strict=True)])
    write_textfile(settings, metrics, incidents, docs)
    docs.write("latest", {"metrics": [asdict(m) for m in metrics], "incidents": [asdict(i) for i in incidents]})
    docs.close()
    return MonitorResult(metrics, events, delivered, open_count, failures)


def _event_row(event: IncidentEvent, alert: Alert) -> dict[str, Any]:
    return {
        "at": dt.datetime.fromtimestamp(event.at, dt.UTC),
        "incident_id": event.incident.incident_id,
        "exchange": event.incident.exchange,
        "metric": event.incident.metric,
        "kind": event.kind,
        "severity": event.severity,
        "value": float(event.value),
        "threshold": float(event.threshold),
        "message": event.message,
        "delivery": json.dumps(alert.delivery) if alert.delivery else "log only",
    }


def _append(settings: Settings, identifier: str, rows: list[dict[str, Any]]) -> None:
    """History is best effort: a catalog outage is logged, and monitoring (alerts) goes on."""
    if not rows:
        return
    import pyarrow as pa

    from k2.lake import appends
    from k2.lake.catalog import load_catalog

    try:
        table = load_catalog(settings.lake).load_table(identifier)
        appends.append(table, pa.Table.from_pylist(rows, schema=table.schema().as_arrow()))
    except Exception as exc:
        log.error(
            "monitor.history_write_failed", table=identifier, rows=len(rows), error=f"{type(exc).__name__}: {exc}"
        )
