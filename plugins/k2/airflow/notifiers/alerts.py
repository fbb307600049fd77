"""Airflow notifiers and deadline callbacks, routed through K2's alert channels (log, webhook,
e-mail; see ``k2.monitoring.notifiers``)."""

from __future__ import annotations

import asyncio
from datetime import timedelta
from typing import Any

from airflow.sdk import AsyncCallback, BaseNotifier, DeadlineAlert, DeadlineReference


class K2AlertNotifier(BaseNotifier):
    """Sends an alert about a DAG run or task (``on_failure_callback=K2AlertNotifier(...)``)."""

    template_fields = ("message",)

    def __init__(self, severity: str = "critical", message: str = "") -> None:
        super().__init__()
        self.severity = severity
        self.message = message

    def notify(self, context: Any) -> None:
        from k2.monitoring.alerts import send_alert

        if getattr(context.get("exception"), "already_alerted", False):
            return  # one failure, one alert: the job sent it with the details (a quality gate)
        ti = context.get("ti") or context.get("task_instance")
        run = context.get("dag_run")
        where = f"{getattr(run, 'dag_id', '?')}"
        if ti is not None:
            where += f".{ti.task_id}"
        detail = self.message or f"run {getattr(run, 'run_id', '?')} failed"
        if context.get("exception"):
            detail += f": {context['exception']}"
        send_alert(self.severity, where, detail)


async def deadline_missed(context: dict[str, Any], **kwargs: Any) -> None:
    """Deadline callback (runs in the triggerer): the DAG run is still unfinished at its deadline."""
    from k2.monitoring.alerts import send_alert

    run = context.get("dag_run") or {}
    deadline = (context.get("deadline") or {}).get("deadline_time")
    run_id = run.get("dag_run_id") or run.get("run_id", "?")  # the scheduler sends the REST API's DAG run model
    message = (
        f"run {run_id} is still {run.get('state', 'running')} past its deadline {deadline} "
        f"({kwargs.get('allowed_min', '?')} min after it was queued)"
    )
    await asyncio.to_thread(
        send_alert, kwargs.get("severity", "warning"), f"deadline {run.get('dag_id', '?')}", message
    )


def batch_deadline(minutes: float, severity: str = "warning") -> DeadlineAlert:
    """The deadline of a batch DAG run: ``minutes`` after it was queued."""
    return DeadlineAlert(
        reference=DeadlineReference.DAGRUN_QUEUED_AT,
        interval=timedelta(minutes=minutes),
        callback=AsyncCallback(deadline_missed, kwargs={"allowed_min": minutes, "severity": severity}),
    )
