"""The Bronze streams' progress as Kafka consumer-group offsets.

Spark's Kafka source keeps its offsets in the stream's checkpoint, which only the stream's host
reads. After each micro-batch the stream also commits them to the group ``k2-bronze-<exchange>``
(its listener, k2.streams.listener; a failure is logged and the next batch commits again): the
lag is then visible to any host and to Kafka's own tools (``kafka-consumer-groups.sh
--describe --group k2-bronze-binance``), and monitoring reads it from there. The checkpoint stays
the source of truth for replay; the group is a published copy and never drives consumption.
"""

from __future__ import annotations

from typing import Any


def bronze_group(exchange: str) -> str:
    return f"k2-bronze-{exchange}"


def group_offsets(consumer: Any, topic: str) -> dict[int, int]:
    """The offsets committed for ``consumer``'s group on ``topic`` (partitions without one left out)."""
    from confluent_kafka import TopicPartition

    count = len(consumer.list_topics(topic, timeout=5).topics[topic].partitions)
    committed = consumer.committed([TopicPartition(topic, p) for p in range(count)], timeout=5)
    return {tp.partition: tp.offset for tp in committed if tp.offset >= 0}
