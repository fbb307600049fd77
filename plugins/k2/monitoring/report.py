"""What ``k2 status`` shows of monitoring: the latest measurement per stream, and an HTML chart of
latency and lag over the last hour from ``ops.stream_metrics``."""

from __future__ import annotations

import datetime as dt
import html
import time
from pathlib import Path
from typing import Any

from k2.docstore import opened
from k2.monitoring.shared import monitoring_docs
from k2.settings import Settings

STREAM_HEADERS = (
    "stream",
    "state",
    "p99 s (kafka / event)",
    "lag msgs",
    "lag s",
    "freshness s",
    "rows/s",
    "restarts 1h",
    "open incidents",
    "measured",
)
NO_MEASUREMENT = "no monitoring measurement yet (the k2_monitoring DAG runs every minute; `k2 monitor` measures now)"


def measured_ago(measurement: dict[str, Any]) -> str:
    """How long ago a monitoring measurement (a row of the latest document) was taken: "42s ago"."""
    return f"{time.time() - measurement['measured_at']:.0f}s ago"


def _fmt(value: Any, digits: int = 1) -> str:
    if value is None:
        return "-"
    return f"{value:.{digits}f}" if isinstance(value, float) else str(value)


def stream_rows(settings: Settings) -> list[tuple[str, ...]]:
    with opened(monitoring_docs(settings)) as docs:
        latest = docs.read("latest") or {}
    incidents = latest.get("incidents") or []
    rows = []
    for m in latest.get("metrics") or []:
        open_ = [f"{i['metric']} {i['severity']}" for i in incidents if i["exchange"] == m["exchange"]]
        rows.append(
            (
                m["exchange"],
                m["stream_state"],
                f"{_fmt(m['kafka_latency_p99_s'])} / {_fmt(m['event_latency_p99_s'])}",
                _fmt(m["lag_messages"]),
                _fmt(m["lag_s"]),
                _fmt(m["freshness_s"]),
                _fmt(m["throughput_rows_per_s"]),
                _fmt(m["restarts_1h"]),
                ", ".join(open_) or "none",
                measured_ago(m),
            )
        )
    return rows


SERIES = (
    ("kafka_latency_p99_s", "p99 latency, Kafka -> commit (s)"),
    ("event_latency_p99_s", "p99 latency, event -> commit (s)"),
    ("lag_s", "lag (s)"),
    ("lag_messages", "lag (records)"),
)
COLOURS = ("#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b")


def write_chart(settings: Settings, path: Path, hours: float = 1.0) -> int:
    """Writes a self-contained HTML page (inline SVG, no scripts); returns the points plotted."""
    since, rows = measurements(settings, hours)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(
        "<!doctype html><html><head><meta charset='utf-8'><title>K2 streams, last hour</title>"
        "<style>body{font-family:sans-serif;margin:2em}svg{margin:1em 0;border:1px solid #ddd}</style></head>"
        f"<body><h1>K2 streams: latency and lag since {since:%Y-%m-%d %H:%M} UTC</h1>"
        f"<p>{len(rows)} measurements from ops.stream_metrics (k2_monitoring, every minute).</p>"
        + "".join(charts(rows, since, hours))
        + "</body></html>"
    )
    return len(rows)


def measurements(settings: Settings, hours: float) -> tuple[dt.datetime, list[dict[str, Any]]]:
    """The window's start and the ops.stream_metrics rows since then, oldest first."""
    from pyiceberg.expressions import GreaterThanOrEqual

    from k2.lake.catalog import load_catalog
    from k2.lake.tables import STREAM_METRICS

    since = dt.datetime.now(dt.UTC) - dt.timedelta(hours=hours)
    table = load_catalog(settings.lake).load_table(STREAM_METRICS.identifier)
    rows = (
        table.scan(
            row_filter=GreaterThanOrEqual("measured_at", since.isoformat()),
            selected_fields=("measured_at", "exchange", *[s for s, _ in SERIES]),
        )
        .to_arrow()
        .to_pylist()
    )
    rows.sort(key=lambda r: r["measured_at"])
    return since, rows


def charts(rows: list[dict[str, Any]], since: dt.datetime, hours: float) -> list[str]:
    """One titled inline-SVG chart per series (HTML fragments; no scripts)."""
    return [_svg_chart(title, rows, column, since, hours) for column, title in SERIES]


def _svg_chart(title: str, rows: list[dict[str, Any]], column: str, since: dt.datetime, hours: float) -> str:
    width, height, pad = 900, 260, 50
    by_exchange: dict[str, list[tuple[float, float]]] = {}
    for r in rows:
        if r[column] is not None:
            x = (r["measured_at"] - since).total_seconds() / (hours * 3600)
            by_exchange.setdefault(r["exchange"], []).append((x, float(r[column])))
    top = max((v for pts in by_exchange.values() for _, v in pts), default=1.0) or 1.0
    parts = [
        f"<h2>{html.escape(title)}</h2><svg width='{width}' height='{height}' "
        f"viewBox='0 0 {width} {height}' xmlns='http://www.w3.org/2000/svg'>",  # viewBox: scales down to fit
        f"<text x='5' y='{pad - 10}' font-size='12'>{top:.3g}</text>",
        f"<text x='5' y='{height - pad}' font-size='12'>0</text>",
        f"<line x1='{pad}' y1='{height - pad}' x2='{width - 10}' y2='{height - pad}' stroke='#999'/>",
        f"<text x='{pad}' y='{height - 20}' font-size='12'>-{hours:g} h</text>",
        f"<text x='{width - 40}' y='{height - 20}' font-size='12'>now</text>",
    ]
    for n, (exchange, pts) in enumerate(sorted(by_exchange.items())):
        colour = COLOURS[n % len(COLOURS)]
        coords = " ".join(
            f"{pad + x * (width - pad - 10):.1f},{height - pad - v / top * (height - 2 * pad):.1f}" for x, v in pts
        )
        parts.append(f"<polyline fill='none' stroke='{colour}' stroke-width='2' points='{coords}'/>")
        parts.append(
            f"<text x='{width - 150}' y='{20 + 15 * n}' font-size='12' fill='{colour}'>"
            f"{html.escape(exchange)} (last {pts[-1][1]:.3g})</text>"
        )
    if not by_exchange:
        parts.append(f"<text x='{pad + 20}' y='{height / 2}'>no measurements in this window</text>")
    return "".join(parts) + "</svg>"
