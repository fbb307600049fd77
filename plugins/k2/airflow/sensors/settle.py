"""The batch's Bronze sensor: Silver may read an interval only once Bronze holds all of it."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from airflow.sdk import BaseSensorOperator
from airflow.sdk.exceptions import AirflowSkipException

from k2.airflow.intervals import catches_up, run_interval
from k2.medallion.interval import Interval
from k2.settings import load_settings


class BronzeSettledSensor(BaseSensorOperator):
    """Waits until Bronze holds every record ingested in the interval (k2.medallion.settle). Deferrable
    by default: after one check the wait moves to the triggerer (BronzeSettledTrigger), so a
    waiting batch holds no worker slot. Skips Silver and Gold when Bronze has no row in the interval
    nor in any earlier range they still owe (no Spark job for an hour without data)."""

    template_fields = ("exchange",)
    ui_color = "#cd7f32"

    def __init__(self, *, exchange: str, deferrable: bool = True, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.exchange = exchange
        self.deferrable = deferrable

    def execute(self, context: Any) -> Any:
        if not self.deferrable:
            return super().execute(context)
        if self.poke(context):
            return None
        from k2.airflow.triggers.settle import BronzeSettledTrigger

        interval = run_interval(context, self.exchange)
        self.defer(
            trigger=BronzeSettledTrigger(self.exchange, interval.end.isoformat(), self.poke_interval),
            method_name="execute_complete",
            timeout=timedelta(seconds=self.timeout),
        )

    def execute_complete(self, context: Any, event: dict[str, Any]) -> None:
        self.log.info("%s", event.get("detail"))
        self._skip_if_empty(run_interval(context, self.exchange), context)

    def poke(self, context: Any) -> bool:
        from k2.medallion.settle import bronze_settlement

        interval = run_interval(context, self.exchange)
        settlement = bronze_settlement(load_settings(), self.exchange, interval.end)
        self.log.info("interval=%s settled=%s %s", interval.label, settlement.settled, settlement.detail)
        if settlement.settled:
            self._skip_if_empty(interval, context)
        return settlement.settled

    def _skip_if_empty(self, interval: Interval, context: Any) -> None:
        from k2.medallion.ledger import settle_if_empty

        if settle_if_empty(load_settings(), interval, catch_up=catches_up(context)):
            raise AirflowSkipException(
                f"Bronze {self.exchange} holds no record in {interval.label} nor in any range still to catch up: "
                "nothing to do (recorded in ops.medallion_ledger)"
            )
