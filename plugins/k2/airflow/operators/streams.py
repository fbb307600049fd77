"""The operator of the stream supervisor DAGs."""

from __future__ import annotations

import threading
from dataclasses import asdict
from datetime import timedelta
from typing import Any

from airflow.sdk import BaseOperator
from airflow.sdk.exceptions import AirflowException


class BronzeStreamSupervisorOperator(BaseOperator):
    """Keeps one exchange's Bronze stream running for ``window``, checking it every
    ``K2_STREAM_CHECK_INTERVAL_S`` (start, restart with back-off, kill when stalled).

    Each check logs one status line (state, pid, last batch, lag, restarts); the last report is
    the task's return value. The task fails when the supervisor gives up (too many restarts, or a
    failure a restart cannot fix) after raising a critical alert. Scheduled ``@continuous`` with
    one active run, consecutive runs supervise without a gap; while the DAG is paused nobody
    renews the stream's lease and the stream stops itself cleanly.
    """

    template_fields = ("exchange",)
    ui_color = "#cd7f32"

    def __init__(self, *, exchange: str, window: timedelta = timedelta(minutes=10), **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.exchange = exchange
        self.window = window
        self.killed = threading.Event()

    def execute(self, context: Any) -> dict[str, Any]:
        from k2.settings import load_settings
        from k2.streams.supervisor import StreamSupervisor

        supervisor = StreamSupervisor(load_settings(), self.exchange, alert=self._alert)
        try:
            reports = supervisor.supervise(
                self.window.total_seconds(),
                on_report=lambda r: self.log.info("%s", r.line()),
                should_continue=lambda: not self.killed.is_set(),
            )
        finally:
            supervisor.close()
        last = reports[-1]
        if last.state == "given_up":
            raise AirflowException(f"Bronze stream {self.exchange} is given up: {last.reason}")
        return asdict(last)

    def on_kill(self) -> None:
        # ends supervision after the current check; the stream itself keeps running on its lease
        # and the next supervisor run takes it over
        self.killed.set()

    def _alert(self, severity: str, exchange: str, message: str) -> None:
        from k2.monitoring.alerts import send_alert

        send_alert(severity, f"k2_bronze_{exchange}", message, logger=self.log)
