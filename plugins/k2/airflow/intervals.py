"""The interval a batch task works on, from its Airflow run: data interval, or validated
manual/backfill parameters. Wrong parameters fail the task at once: a retry would fail the same way."""

from __future__ import annotations

import datetime as dt
import functools
from collections.abc import Callable
from typing import Any, ParamSpec, TypeVar

from airflow.sdk.exceptions import AirflowFailException, AirflowSkipException

from k2.errors import K2Error
from k2.medallion.interval import Interval, validate_interval
from k2.settings import load_settings

P = ParamSpec("P")
R = TypeVar("R")


def fail_fast(func: Callable[P, R]) -> Callable[P, R]:
    """A K2Error from ``func`` fails the task without retries (AirflowFailException): it comes from
    the run's own parameters, which no retry changes."""

    @functools.wraps(func)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        try:
            return func(*args, **kwargs)
        except K2Error as exc:
            raise AirflowFailException(str(exc)) from exc

    return wrapper


@fail_fast
def run_interval(context: Any, exchange: str) -> Interval:
    """The Bronze ingestion-time interval a task works on: the run's ``start``/``end`` parameters
    when given (manual trigger), else its data interval (schedule and Airflow backfills) shifted by
    ``K2_BATCH_INGEST_GRACE_S``. Skips the task when the run names another exchange."""
    params = context["params"]
    chosen = params.get("exchange") or "all"
    if chosen not in ("all", exchange):
        raise AirflowSkipException(f"this run processes {chosen} only")
    settings = load_settings()
    if params.get("start") or params.get("end"):
        return _manual_interval(exchange, params, settings.exchanges, settings.batch.max_manual_interval_h)
    start, end = context.get("data_interval_start"), context.get("data_interval_end")
    if start is None or end is None or start == end:  # a manual run without parameters: the last full hour
        end = dt.datetime.now(dt.UTC).replace(minute=0, second=0, microsecond=0)
        start = end - dt.timedelta(hours=1)
    # Bronze ingestion time, shifted by the grace: what was stamped in the hour and arrived within it
    grace = dt.timedelta(seconds=settings.batch.ingest_grace_s)
    return validate_interval(exchange, start + grace, end + grace, exchanges=settings.exchanges)


def catches_up(context: Any) -> bool:
    """Whether the run also processes the earlier ranges its layer has not covered (the default;
    a manual run can set ``catch_up`` to false to process exactly its interval)."""
    return bool(context["params"].get("catch_up", True))


@fail_fast
def validate_run_params(params: dict[str, Any]) -> str:
    """Fails a run before any work when its parameters are wrong; says what it will process."""
    settings = load_settings()
    chosen = params.get("exchange") or "all"
    exchanges = settings.exchanges if chosen == "all" else (chosen,)
    if params.get("start") or params.get("end"):
        limit = settings.batch.max_manual_interval_h
        return ", ".join(_manual_interval(ex, params, settings.exchanges, limit).label for ex in exchanges)
    if chosen != "all":
        validate_interval(chosen, "2026-01-01T00:00:00Z", "2026-01-01T01:00:00Z", exchanges=settings.exchanges)
    return f"{'/'.join(exchanges)}: the run's data interval"


def _manual_interval(exchange: str, params: dict[str, Any], exchanges: tuple[str, ...], max_h: float) -> Interval:
    start, end = params.get("start") or "", params.get("end") or ""
    return validate_interval(exchange, start, end, exchanges=exchanges, max_manual_h=max_h)
