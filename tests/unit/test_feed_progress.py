"""The feed's progress counts are true while it runs, whichever way deliveries are reported (a
stand-in for confluent-kafka's Producer plays the broker: no network)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from structlog.testing import capture_logs

from k2.exchanges import get_exchange
from k2.feeds.producer import TradeProducer
from k2.feeds.runner import _progress
from k2.settings import Settings


class FakeProducer:
    """Queues records; ``deliver(n)`` acknowledges the oldest n, reporting each success only when
    asked to (``delivery.report.only.error`` off), as librdkafka does."""

    def __init__(self, config: dict[str, Any]) -> None:
        self.only_errors = bool(config.get("delivery.report.only.error"))
        self.queue: list[Any] = []
        self.reports: list[Any] = []

    def produce(self, topic, value, key, headers=None, on_delivery=None) -> None:
        self.queue.append(on_delivery)

    def deliver(self, n: int) -> None:
        acked, self.queue = self.queue[:n], self.queue[n:]
        if not self.only_errors:
            self.reports += acked

    def poll(self, timeout: float = 0.0) -> int:
        served, self.reports = self.reports, []
        for callback in served:
            callback(None, None)
        return len(served)

    def __len__(self) -> int:
        return len(self.queue) + len(self.reports)

    def flush(self, timeout: float = 0.0) -> int:
        self.deliver(len(self.queue))
        self.poll()
        return 0

    def close(self) -> None:
        pass


@pytest.mark.parametrize("report_successes", [True, False])
def test_progress_counts_what_was_delivered_so_far(tmp_path: Path, monkeypatch, report_successes: bool) -> None:
    monkeypatch.setattr("confluent_kafka.Producer", FakeProducer)
    producer = TradeProducer(
        Settings.from_env({}, home=tmp_path), get_exchange("binance"), report_successes=report_successes
    )
    producer.publish_batch([b"{}"] * 10, [b"BTCUSDT"] * 10)
    producer._producer.deliver(7)
    producer.poll(0)
    assert (producer.stats.delivered, producer.stats.in_flight) == (7, 3)
    with capture_logs() as logs:
        _progress("binance", producer, 10, started=0.0)
    assert [(e["event"], e["delivered"], e["queued"]) for e in logs] == [("feed.progress", 7, 3)]
    stats = producer.close()
    assert (stats.delivered, stats.failed, stats.in_flight) == (10, 0, 0)
