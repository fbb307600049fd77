"""The Bronze streams' progress as Kafka consumer-group offsets.

Spark's Kafka source keeps its offsets in the stream's checkpoint, which only the stream's host
reads. After each micro-batch the stream also commits them to the group ``k2-bronze-<exchange>``:
the lag is then visible to any host and to Kafka's own tools (``kafka-consumer-groups.sh
--describe --group k2-bronze-binance``), and monitoring reads it from there. The checkpoint stays
the source of truth for replay; the group is a published copy and never drives consumption.
"""

from __future__ import annotations

from typing import Any

from k2.log import get_logger
from k2.settings import KafkaSettings

log = get_logger(__name__)


def bronze_group(exchange: str) -> str:
    return f"k2-bronze-{exchange}"


class GroupOffsetPublisher:
    """Commits a stream's end offsets for its group; a failure is logged, never raised (it must not
    stop ingestion: the next batch commits again)."""

    def __init__(self, kafka: KafkaSettings, exchange: str) -> None:
        from confluent_kafka import Consumer

        self.group = bronze_group(exchange)
        self._consumer = Consumer(
            {
                "bootstrap.servers": kafka.bootstrap_servers,
                "group.id": self.group,
                "enable.auto.commit": False,
                "log_level": 0,
            }
        )

    def publish(self, end_offsets: dict[str, dict[str, int]]) -> bool:
        from confluent_kafka import KafkaException, TopicPartition

        partitions = [
            TopicPartition(topic, int(partition), int(offset))
            for topic, offsets in end_offsets.items()
            for partition, offset in offsets.items()
        ]
        if not partitions:
            return False
        try:
            self._consumer.commit(offsets=partitions, asynchronous=False)
        except KafkaException as exc:
            log.warning("bronze.group_commit_failed", group=self.group, error=str(exc))
            return False
        return True

    def close(self) -> None:
        self._consumer.close()


def group_offsets(consumer: Any, topic: str) -> dict[int, int]:
    """The offsets committed for ``consumer``'s group on ``topic`` (partitions without one left out)."""
    from confluent_kafka import TopicPartition

    count = len(consumer.list_topics(topic, timeout=5).topics[topic].partitions)
    committed = consumer.committed([TopicPartition(topic, p) for p in range(count)], timeout=5)
    return {tp.partition: tp.offset for tp in committed if tp.offset >= 0}
