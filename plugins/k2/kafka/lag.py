"""How far a stream is behind Kafka, from the offsets its last micro-batch committed.

One implementation for the supervisor (records waiting: is it stalled?) and monitoring (records
waiting and the age of the oldest of them: how late is it?).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

from k2.settings import KafkaSettings


@dataclass(frozen=True)
class Lag:
    records: int
    oldest_age_s: float | None  # 0 when nothing waits; None when not asked or not readable


def committed_offsets(progress: dict[str, Any], topic: str) -> dict[int, int]:
    """Per-partition end offsets of the last batch, as the stream's progress file records them."""
    return {int(p): o for p, o in (progress.get("end_offsets") or {}).get(topic, {}).items()}


def offsets_consumer(kafka: KafkaSettings, group: str):  # -> confluent_kafka.Consumer; reads offsets, commits none
    from confluent_kafka import Consumer

    return Consumer(
        {
            "bootstrap.servers": kafka.bootstrap_servers,
            "group.id": group,
            "enable.auto.commit": False,
            "log_level": 0,
        }
    )


def measure_lag(consumer: Any, topic: str, committed: dict[int, int], *, with_age: bool) -> Lag | None:
    """Lag of ``topic`` behind ``committed``; None when Kafka cannot be asked. ``with_age`` reads the
    oldest waiting record of each partition (one fetch per lagging partition)."""
    from confluent_kafka import KafkaException, TopicPartition

    try:
        partitions = consumer.list_topics(topic, timeout=5).topics[topic].partitions
        waiting, oldest = 0, None
        for p in partitions:
            low, high = consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=5)
            start = max(committed.get(p, low), low)
            if start >= high:
                continue
            waiting += high - start
            if not with_age:
                continue
            consumer.assign([TopicPartition(topic, p, start)])
            msg = consumer.poll(5)
            if msg is None or msg.error():
                with_age, oldest = False, None  # count the rest; the age is unknown
                continue
            ts = msg.timestamp()[1] / 1000
            oldest = ts if oldest is None else min(oldest, ts)
    except (KafkaException, KeyError, TypeError):
        return None
    if not with_age:
        return Lag(waiting, None)
    return Lag(waiting, 0.0 if oldest is None else round(max(0.0, time.time() - oldest), 3))
