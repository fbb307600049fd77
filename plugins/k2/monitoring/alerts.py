"""Alert delivery. Every alert goes to the log; configured webhook/SMTP channels come with the
monitoring issue and plug in here, so callers (supervisor, deadline callbacks) never change."""

from __future__ import annotations

import logging
from typing import Any

from k2.log import get_logger

_log = get_logger("k2.alerts")


def send_alert(severity: str, source: str, message: str, *, logger: logging.Logger | Any | None = None) -> None:
    """Deliver one alert. ``severity`` is info, warning, critical or resolved."""
    if logger is not None:
        level = logging.CRITICAL if severity == "critical" else logging.WARNING
        logger.log(level, "ALERT [%s] %s: %s", severity.upper(), source, message)
    _log.warning("alert", severity=severity, source=source, message=message)
