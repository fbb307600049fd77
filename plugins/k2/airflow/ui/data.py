"""What the K2 view shows, gathered from the readers ``k2 status`` and monitoring already use:
files and Iceberg metadata only, so a page never waits on Kafka or Spark."""

from __future__ import annotations

import time
from dataclasses import dataclass, field

from k2.docstore import opened
from k2.log import get_logger
from k2.monitoring.incidents import Incident, IncidentStore
from k2.monitoring.report import STREAM_HEADERS, charts, measurements, stream_rows
from k2.monitoring.shared import monitoring_docs
from k2.quality.docs import Validation, recent_validations
from k2.settings import Settings
from k2.status import reconciliation_rows

log = get_logger(__name__)

Row = tuple[str, ...]


@dataclass
class ViewData:
    generated_at: float
    hours: float  # the charts' window
    stream_headers: tuple[str, ...]
    streams: list[Row]
    incidents: list[Incident]
    reconciliation: list[Row]
    charts: list[str]  # HTML fragments (inline SVG) from k2.monitoring.report
    chart_points: int = 0
    chart_error: str | None = None
    validations: list[Validation] = field(default_factory=list)


def collect(settings: Settings, hours: float) -> ViewData:
    with opened(monitoring_docs(settings)) as docs:
        incidents = sorted(IncidentStore(docs).load().open.values(), key=lambda i: i.opened_at)
    drawn, points, error = _charts(settings, hours)
    return ViewData(
        generated_at=time.time(),
        hours=hours,
        stream_headers=STREAM_HEADERS,
        streams=stream_rows(settings),
        incidents=incidents,
        reconciliation=[tuple(r) for r in reconciliation_rows(settings)],
        charts=drawn,
        chart_points=points,
        chart_error=error,
        validations=recent_validations(settings),
    )


def _charts(settings: Settings, hours: float) -> tuple[list[str], int, str | None]:
    try:
        since, rows = measurements(settings, hours)
    except Exception as exc:  # the rest of the page is still worth showing; details go to the log only
        log.error("k2_view.chart_failed", error=f"{type(exc).__name__}: {exc}")
        return [], 0, f"the history in ops.stream_metrics could not be read ({type(exc).__name__})"
    return charts(rows, since, hours), len(rows), None
