"""The interval a batch task works on, from its Airflow run: data interval, or validated
manual/backfill parameters."""

from __future__ import annotations

import datetime as dt
from typing import Any

from airflow.sdk.exceptions import AirflowSkipException

from k2.medallion.interval import Interval, validate_interval
from k2.settings import load_settings


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
        return validate_interval(
            exchange, params.get("start") or "", params.get("end") or "", exchanges=settings.exchanges
        )
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


def validate_run_params(params: dict[str, Any]) -> str:
    """Fails a run before any work when its parameters are wrong; says what it will process."""
    settings = load_settings()
    chosen = params.get("exchange") or "all"
    exchanges = settings.exchanges if chosen == "all" else (chosen,)
    if params.get("start") or params.get("end"):
        intervals = [
            validate_interval(ex, params.get("start") or "", params.get("end") or "", exchanges=settings.exchanges)
            for ex in exchanges
        ]
        return ", ".join(i.label for i in intervals)
    if chosen != "all":
        validate_interval(chosen, "2026-01-01T00:00:00Z", "2026-01-01T01:00:00Z", exchanges=settings.exchanges)
    return f"{'/'.join(exchanges)}: the run's data interval"
