"""Publishes raw exchange payloads to the exchange's topic, losing nothing silently.

Idempotent producer (``enable.idempotence``, ``acks=all``): retries never duplicate or reorder
records. Key = exchange symbol (per-symbol ordering); value = the payload exactly as the exchange
sent it; headers = exchange, payload format, received-at (epoch microseconds). A full local queue
blocks the caller (backpressure) instead of dropping; every delivery failure is counted and logged.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from k2.errors import K2Error
from k2.exchanges import Exchange
from k2.feeds.events import CONNECTION_KEY, CONNECTION_KIND, KIND_HEADER, ConnectionEvent
from k2.log import get_logger
from k2.settings import KafkaSettings, Settings

log = get_logger(__name__)

DeliveryCallback = Callable[[Any, Any], None]  # (KafkaError | None, Message)


@dataclass
class DeliveryStats:
    produced: int = 0
    delivered: int = 0
    failed: int = 0
    backpressure_waits: int = 0
    errors: dict[str, int] = field(default_factory=dict)

    @property
    def in_flight(self) -> int:
        return self.produced - self.delivered - self.failed


def producer_config(kafka: KafkaSettings, **overrides: Any) -> dict[str, Any]:
    return {
        "bootstrap.servers": kafka.bootstrap_servers,
        "enable.idempotence": True,
        "acks": "all",
        "compression.type": "lz4",
        "linger.ms": 10,
        "batch.size": 1_000_000,
        "queue.buffering.max.messages": 500_000,
        "queue.buffering.max.kbytes": 512 * 1024,
        # a broker outage longer than this turns into counted delivery failures, not a hang
        "message.timeout.ms": 120_000,
        "log_level": 3,
        **overrides,
    }


class TradeProducer:
    """One exchange's producer. Call :meth:`publish` per message and :meth:`close` at the end."""

    _LOG_EVERY_FAILURE_UNTIL = 20
    CLOSE_TIMEOUT_S = 60.0  # the flush at close: records still queued after it count as failed

    def __init__(
        self,
        settings: Settings,
        exchange: Exchange,
        *,
        report_successes: bool = True,
        extra_headers: tuple[tuple[str, bytes], ...] = (),
        **config_overrides: Any,
    ) -> None:
        """``report_successes=False`` asks the broker client for failure reports only, which saves a
        callback per record; delivered is then derived from the queue (produced - failed - still
        queued or in flight). Per-record callbacks passed to :meth:`publish` need ``report_successes=True``.
        ``extra_headers`` follow the three every record carries (e.g. gap repair's ``source``)."""
        from confluent_kafka import Producer

        self.settings = settings
        self.report_successes = report_successes
        if not report_successes:
            config_overrides["delivery.report.only.error"] = True
        self.exchange = exchange
        self.topic = settings.topic_for(exchange.name)
        self._stats = DeliveryStats()
        self._closed = False
        self._exchange_header = exchange.name.encode()
        self._format_header = exchange.payload_format.encode()
        self._extra_headers = list(extra_headers)
        self._producer = Producer(producer_config(settings.kafka, **config_overrides))

    @property
    def stats(self) -> DeliveryStats:
        """The counts so far. Without success reports no callback counts a delivery: what left the
        client's queue without a failure report was delivered (progress lines said 0 until the end)."""
        if not self.report_successes and not self._closed:
            self._stats.delivered = max(0, self._stats.produced - self._stats.failed - len(self._producer))
        return self._stats

    def check_ready(self, timeout: float = 10.0) -> None:
        """Fail fast with a clear message when the broker or the topic is missing."""
        from confluent_kafka import KafkaException

        try:
            topics = self._producer.list_topics(timeout=timeout).topics
        except KafkaException as exc:
            raise K2Error(
                f"cannot reach Kafka at {self.settings.kafka.bootstrap_servers}: {exc}",
                "start the embedded broker with `k2 kafka start` (or `k2 up`), or fix K2_KAFKA_BOOTSTRAP_SERVERS.",
            ) from exc
        if self.topic not in topics:
            raise K2Error(
                f"topic {self.topic} does not exist on {self.settings.kafka.bootstrap_servers}",
                "create the exchange topics with `k2 kafka topics` (or `k2 up`).",
            )

    def publish(self, payload: bytes, key: bytes, on_delivery: DeliveryCallback | None = None) -> None:
        """Queue one record; blocks while the local queue is full. ``on_delivery`` replaces the
        default counting callback and must call :meth:`count_delivery` itself."""
        self._produce_waiting(payload, key, self._headers(), on_delivery or self._count_delivery)
        self._stats.produced += 1

    def publish_event(self, event: ConnectionEvent) -> None:
        """Queue a connection event (k2.feeds.events): the same topic and headers as a trade frame,
        plus the header that marks its kind, under the key no symbol spells."""
        headers = [*self._headers(), (KIND_HEADER, CONNECTION_KIND)]
        self._produce_waiting(event.payload(), CONNECTION_KEY, headers, self._count_delivery)
        self._stats.produced += 1

    def publish_batch(self, payloads: list[bytes], keys: list[bytes]) -> None:
        """Queue many records received together (one received-at for all): the hot path of the
        simulator, with the per-record work cut to the produce call itself."""
        headers = self._headers()
        produce, topic, callback = self._producer.produce, self.topic, self._count_delivery
        for payload, key in zip(payloads, keys, strict=True):
            try:
                produce(topic, payload, key, headers=headers, on_delivery=callback)
            except BufferError:
                self._produce_waiting(payload, key, headers, callback)
        self._stats.produced += len(payloads)

    def _headers(self) -> list[tuple[str, bytes]]:
        return [
            ("exchange", self._exchange_header),
            ("format", self._format_header),
            ("received_at", str(time.time_ns() // 1000).encode()),
            *self._extra_headers,
        ]

    def _produce_waiting(self, payload: bytes, key: bytes, headers: list, callback: DeliveryCallback) -> None:
        while True:
            try:
                self._producer.produce(self.topic, payload, key, headers=headers, on_delivery=callback)
                return
            except BufferError:  # local queue full: serve deliveries until it has room, never drop
                self._stats.backpressure_waits += 1
                self._producer.poll(0.05)

    def poll(self, timeout: float = 0.0) -> None:
        """Serve delivery callbacks."""
        self._producer.poll(timeout)

    def queue_length(self) -> int:
        return len(self._producer)

    def count_delivery(self, err: Any, msg: Any) -> None:
        """The default delivery callback; custom callbacks call it to keep the counts right."""
        self._count_delivery(err, msg)

    def _count_delivery(self, err: Any, msg: Any) -> None:
        stats = self._stats
        if err is None:
            stats.delivered += 1
            return
        stats.failed += 1
        reason = err.str()
        stats.errors[reason] = stats.errors.get(reason, 0) + 1
        if stats.failed <= self._LOG_EVERY_FAILURE_UNTIL or stats.failed % 1000 == 0:
            value = msg.value() or b""
            log.error(
                "feed.delivery_failed",
                topic=self.topic,
                key=msg.key(),
                error=reason,
                failed=stats.failed,
                payload=value[:200],
            )

    def close(self, timeout: float = CLOSE_TIMEOUT_S) -> DeliveryStats:
        """Flush everything queued; records still undelivered afterwards are counted as failed."""
        remaining = self._producer.flush(timeout)
        stats = self._stats
        if not self.report_successes:
            stats.delivered = stats.produced - stats.failed - remaining
        if remaining:
            log.error("feed.flush_incomplete", topic=self.topic, undelivered=remaining, timeout_s=timeout)
            stats.failed += remaining
            stats.errors["undelivered at shutdown"] = remaining
        self._closed = True
        self._producer.close()  # drop broker connections now, not at garbage collection
        return stats
