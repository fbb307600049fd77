"""Alert delivery for every K2 component (monitoring, stream supervisors, batch gates, deadline
callbacks): one call that logs the alert and delivers it on the configured channels, through the
outbox so an unreachable channel loses nothing (see ``k2.monitoring.notifiers``)."""

from __future__ import annotations

import dataclasses
import logging
from typing import Any

from k2.log import get_logger
from k2.monitoring.notifiers import SEVERITIES, Alert, outbox
from k2.settings import Settings, load_settings

_log = get_logger("k2.alerts")


def send_alert(
    severity: str,
    source: str,
    message: str,
    *,
    logger: logging.Logger | Any | None = None,
    settings: Settings | None = None,
) -> Alert:
    """Deliver one alert. ``severity`` is info, warning, critical or resolved."""
    if severity not in SEVERITIES:
        raise ValueError(f"unknown alert severity {severity!r}; use one of {', '.join(SEVERITIES)}")
    return send_alerts([Alert(severity, source, message)], logger=logger, settings=settings)[0]


def send_alerts(
    alerts: list[Alert], *, logger: logging.Logger | Any | None = None, settings: Settings | None = None
) -> list[Alert]:
    """Log, persist to the outbox, then deliver (with whatever else was still pending)."""
    settings = settings or load_settings()
    # a message may quote a failure's text (a command line, a library's exception): never a secret
    alerts = [dataclasses.replace(a, message=settings.redact(a.message)) for a in alerts]
    outbox(settings).add(alerts)
    return log_and_deliver(alerts, settings, logger=logger)


def log_and_deliver(
    alerts: list[Alert], settings: Settings, *, logger: logging.Logger | Any | None = None
) -> list[Alert]:
    """Log ``alerts`` (already in the outbox) and flush the outbox; returns them as attempted."""
    for alert in alerts:
        if logger is not None:
            level = logging.CRITICAL if alert.severity == "critical" else logging.WARNING
            logger.log(level, "ALERT %s", alert.text)
        _log.warning(
            "alert", severity=alert.severity, source=alert.source, message=alert.message, alert_id=alert.alert_id
        )
    attempted = {a.alert_id: a for a in outbox(settings).flush(settings.alerts)}
    return [attempted.get(a.alert_id, a) for a in alerts]
