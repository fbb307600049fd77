"""Trigger of the batch's Bronze sensor: waits in the triggerer, holding no worker slot, until Bronze
holds every Kafka record before the interval's end (k2.medallion.settle)."""

from __future__ import annotations

import asyncio
import datetime as dt
from collections.abc import AsyncIterator
from typing import Any

from airflow.triggers.base import BaseTrigger, TriggerEvent


class BronzeSettledTrigger(BaseTrigger):
    def __init__(self, exchange: str, end: str, poll_interval_s: float = 30.0) -> None:
        super().__init__()
        self.exchange = exchange
        self.end = end  # ISO 8601: trigger arguments are serialised
        self.poll_interval_s = poll_interval_s

    def serialize(self) -> tuple[str, dict[str, Any]]:
        return (
            f"{type(self).__module__}.{type(self).__qualname__}",
            {"exchange": self.exchange, "end": self.end, "poll_interval_s": self.poll_interval_s},
        )

    async def run(self) -> AsyncIterator[TriggerEvent]:
        from k2.medallion.settle import bronze_settlement
        from k2.settings import load_settings

        settings, end = load_settings(), dt.datetime.fromisoformat(self.end)
        while True:
            # the Kafka client blocks: keep it off the triggerer's event loop
            settlement = await asyncio.to_thread(bronze_settlement, settings, self.exchange, end)
            self.log.info(
                "exchange=%s end=%s settled=%s %s", self.exchange, self.end, settlement.settled, settlement.detail
            )
            if settlement.settled:
                yield TriggerEvent({"settled": True, "detail": settlement.detail})
                return
            await asyncio.sleep(self.poll_interval_s)
