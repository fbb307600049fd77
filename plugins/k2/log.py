"""Structured logging for K2 processes (CLI, feeds, Spark drivers).

Events are short names with key=value fields (``log.info("broker.started", pid=...)``) so an
operator can grep them and a collector can parse them (``K2_LOG_FORMAT=json``). Inside Airflow
tasks, Airflow configures structlog itself and K2 leaves it alone.
"""

from __future__ import annotations

import logging
import sys

import structlog

from k2.settings import Settings

_configured = False


def configure_logging(settings: Settings, *, force: bool = False) -> None:
    global _configured
    if _configured and not force:
        return
    level = logging.getLevelName(settings.log_level.upper())
    if settings.log_format == "json":
        renderer: structlog.types.Processor = structlog.processors.JSONRenderer()
    elif settings.log_format == "logfmt":
        renderer = structlog.processors.LogfmtRenderer(key_order=["timestamp", "level", "event"])
    else:
        renderer = structlog.dev.ConsoleRenderer(colors=sys.stderr.isatty())
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            structlog.processors.format_exc_info,
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(level),
        logger_factory=structlog.PrintLoggerFactory(file=sys.stderr),
        cache_logger_on_first_use=False,
    )
    _configured = True


def get_logger(name: str) -> structlog.typing.FilteringBoundLogger:
    return structlog.get_logger(name)
