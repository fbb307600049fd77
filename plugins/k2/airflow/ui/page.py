"""The K2 view's HTML: one server-rendered page, inline CSS and SVG, no scripts and nothing fetched
from elsewhere. Every value from the data is escaped."""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from html import escape
from urllib.parse import quote

from k2.airflow.ui.data import ViewData
from k2.monitoring.incidents import Incident
from k2.monitoring.report import NO_MEASUREMENT
from k2.monitoring.thresholds import DEFAULTS
from k2.quality.docs import Validation

WINDOWS_H = (1, 6, 24)  # chart windows offered as links
REFRESH_S = 60  # k2_monitoring measures every minute

STYLE = (
    "body{font-family:system-ui,sans-serif;margin:1.5em;color:#222}"
    "h1{font-size:1.4em}h2{font-size:1.15em;margin-top:1.6em}"
    "table{border-collapse:collapse;margin:.5em 0}th,td{border:1px solid #ccc;padding:.25em .6em;text-align:left}"
    "th{background:#f3f3f3}.muted{color:#777}.critical{color:#b00020;font-weight:bold}.warning{color:#a15c00}"
    ".failed{color:#b00020}.passed{color:#1b7f2a}svg{max-width:100%;height:auto;border:1px solid #ddd}"
)


def render(view: ViewData, base: str) -> str:
    """The whole page; ``base`` is the URL path the view is served under (links are built on it)."""
    at = _utc(view.generated_at)
    sections = [
        f"<h1>K2 streams</h1><p class='muted'>as of {at} UTC; refreshes every {REFRESH_S}s</p>",
        "<h2>Streams</h2>",
        _streams(view),
        "<h2>Open incidents</h2>",
        _incidents(view.incidents, view.generated_at),
        "<h2>Reconciliation: Kafka, Bronze, Silver</h2>",
        _table(("stream", "state", "ledger", "figures"), view.reconciliation, "no exchange configured"),
        f"<h2>Latency and lag, last {view.hours:g} h</h2>",
        _charts(view, base),
        "<h2>Quality: Data Docs per run</h2>",
        _validations(view, base),
    ]
    return (
        "<!doctype html><html lang='en'><head><meta charset='utf-8'>"
        f"<meta http-equiv='refresh' content='{REFRESH_S}'><title>K2 streams</title>"
        f"<style>{STYLE}</style></head><body>{''.join(sections)}</body></html>"
    )


def _streams(view: ViewData) -> str:
    return _table(view.stream_headers, view.streams, NO_MEASUREMENT)


def _incidents(incidents: Sequence[Incident], now: float) -> str:
    rows = [
        (
            f"<td>{escape(i.exchange)}</td><td>{escape(i.metric)}<br><span class='muted'>"
            f"{escape(DEFAULTS[i.metric][1] if i.metric in DEFAULTS else '')}</span></td>"
            f"<td class='{escape(i.severity)}'>{escape(i.severity)}</td><td>{i.value:g}</td><td>{i.threshold:g}</td>"
            f"<td>{_utc(i.opened_at)} UTC ({_duration(now - i.opened_at)} ago)</td>"
            f"<td>{'under its thresholds since ' + _utc(i.clear_since) if i.clear_since else 'still over'}</td>"
        )
        for i in incidents
    ]
    headers = ("stream", "metric", "severity", "value", "threshold", "opened", "now")
    return _raw_table(headers, rows, "none: every measured figure is under its thresholds")


def _charts(view: ViewData, base: str) -> str:
    links = " | ".join(
        f"<a href='{escape(base)}/?hours={h}'>{h} h</a>" if h != view.hours else f"<b>{h} h</b>" for h in WINDOWS_H
    )
    if view.chart_error:
        return f"<p>{links}</p><p class='failed'>{escape(view.chart_error)}</p>"
    note = f"{view.chart_points} measurements from ops.stream_metrics (k2_monitoring, every minute)"
    return f"<p>{links} &middot; <span class='muted'>{note}</span></p>{''.join(view.charts)}"


def _validations(view: ViewData, base: str) -> str:
    rows = [
        f"<td>{escape(_when(v.validated_at))}</td><td>{escape(v.run_name)}</td><td>{escape(v.suite)}</td>"
        f"<td>{_verdict(v)}</td><td>{_docs_link(v, base)}</td>"
        for v in view.validations
    ]
    empty = "no quality run yet (each Silver and Gold batch validates its data before publishing)"
    return _raw_table(("validated at", "run", "suite", "result", "Data Docs"), rows, empty)


def _verdict(v: Validation) -> str:
    if v.passed is None:
        return "<span class='muted'>result unreadable</span>"
    if v.passed:
        return f"<span class='passed'>passed</span> ({v.evaluated} expectations)"
    return f"<span class='failed'>FAILED</span> ({v.failed} of {v.evaluated} expectations)"


def _docs_link(v: Validation, base: str) -> str:
    if v.page is None:
        return "<span class='muted'>not built</span>"
    return f"<a href='{escape(base)}/docs/{escape(quote(v.page))}'>Data Docs</a>"


def _table(headers: Sequence[str], rows: Sequence[Sequence[object]], empty: str) -> str:
    cells = ["".join(f"<td>{escape(str(c))}</td>" for c in row) for row in rows]
    return _raw_table(headers, cells, empty)


def _raw_table(headers: Sequence[str], rows: Sequence[str], empty: str) -> str:
    """``rows``: each row's cells, already HTML."""
    if not rows:
        return f"<p class='muted'>{escape(empty)}</p>"
    head = "".join(f"<th>{escape(h)}</th>" for h in headers)
    return f"<table><tr>{head}</tr>{''.join(f'<tr>{r}</tr>' for r in rows)}</table>"


def _utc(at: float) -> str:
    return f"{dt.datetime.fromtimestamp(at, dt.UTC):%Y-%m-%d %H:%M:%S}"


def _when(stamp: str) -> str:
    """A GX run time (ISO 8601, extended or basic as in its folder's name) as UTC to the second."""
    try:
        at = dt.datetime.fromisoformat(stamp)
    except ValueError:
        return stamp
    return f"{at.astimezone(dt.UTC) if at.tzinfo else at:%Y-%m-%d %H:%M:%S} UTC"


def _duration(seconds: float) -> str:
    seconds = max(0, int(seconds))
    if seconds < 120:
        return f"{seconds}s"
    if seconds < 7200:
        return f"{seconds // 60} min"
    return f"{seconds / 3600:.1f} h"
