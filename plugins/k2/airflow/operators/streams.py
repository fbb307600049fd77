"""The operator of the stream supervisor DAGs."""

from __future__ import annotations

from dataclasses import asdict
from typing import Any

from airflow.sdk import BaseOperator
from airflow.sdk.exceptions import AirflowFailException


class BronzeStreamSupervisorOperator(BaseOperator):
    """One reconcile of one exchange's Bronze stream: observe it, decide (start, restart with
    back-off, kill when stalled, give up) and act, then exit.

    Its DAG runs it every ``K2_STREAM_CHECK_INTERVAL_S``; what must outlive a run (restart times,
    back-off, the give-up) is in the supervisor's state, and the stream is a detached process that
    keeps running between checks on the lease each check renews. The task logs one status line
    (state, pid, last batch, lag, restarts, action, reason) and returns the report; it fails while
    the supervisor has given up (too many restarts, or a failure a restart cannot fix), after one
    critical alert.
    """

    template_fields = ("exchange",)
    ui_color = "#cd7f32"

    def __init__(self, *, exchange: str, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.exchange = exchange

    def execute(self, context: Any) -> dict[str, Any]:
        from k2.settings import load_settings
        from k2.streams.supervisor import StreamSupervisor

        supervisor = StreamSupervisor(load_settings(), self.exchange, alert=self._alert)
        try:
            report = supervisor.reconcile()
        finally:
            supervisor.close()
        self.log.info("%s", report.line())
        if report.state == "given_up":
            # no retry: only `k2 stream start` (after fixing the cause) lifts a give-up
            raise AirflowFailException(f"Bronze stream {self.exchange} is given up: {report.reason}")
        return asdict(report)

    def on_kill(self) -> None:
        # nothing to undo: a check is a few seconds, and the stream it may have launched is detached
        # and runs on its lease until the next check
        self.log.info("check of the %s stream cancelled; the stream itself keeps running", self.exchange)

    def _alert(self, severity: str, exchange: str, message: str) -> None:
        from k2.monitoring.alerts import send_alert

        send_alert(severity, f"k2_bronze_{exchange}", message, logger=self.log)
