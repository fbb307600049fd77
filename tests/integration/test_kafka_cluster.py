"""K2's embedded Kafka as a 3-node KRaft cluster (three processes, replication factor 3,
min.insync.replicas 2): a supervised Bronze stream under load loses nothing, and holds nothing
twice, when the node leading a partition is killed with SIGKILL mid-stream."""

from __future__ import annotations

import os
import signal
import socket
import threading
import time
from pathlib import Path

import pytest

from k2.kafka.groups import bronze_group, group_offsets
from k2.kafka.lag import offsets_consumer
from k2.monitoring.metrics import kafka_lag
from k2.runtime.broker import LocalKafka
from k2.streams.state import StreamPaths
from k2.streams.supervisor import StreamSupervisor
from tests.helpers import wait_for
from tests.integration.stream_support import (
    EXCHANGE,
    BackgroundFeed,
    bronze_coordinates,
    ensure_topics_and_tables,
    isolated_installation,
    running_job,
)
from tests.integration.test_bronze_streams import end_offsets

pytestmark = pytest.mark.integration

NODES = 3


def free_port_block(count: int, avoid: set[int] = frozenset()) -> int:
    """The first of ``count`` consecutive free loopback ports (node n uses base + n - 1)."""
    for _ in range(200):
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            base = probe.getsockname()[1]
        ports = range(base, base + count)
        if base + count > 65535 or avoid & set(ports):
            continue
        try:
            for port in ports:
                with socket.socket() as sock:
                    sock.bind(("127.0.0.1", port))
        except OSError:
            continue
        return base
    raise RuntimeError(f"no {count} consecutive free ports")


@pytest.fixture
def kafka_cluster(jars, tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    client = free_port_block(NODES)
    controller = free_port_block(NODES, avoid=set(range(client, client + NODES)))
    settings = isolated_installation(
        tmp_path / "home",
        client,
        controller,
        monkeypatch,
        K2_KAFKA_NODES=str(NODES),
        K2_TOPIC_REPLICATION_FACTOR="3",
        K2_TOPIC_PARTITIONS="3",
    )
    kafka = LocalKafka(settings)
    kafka.start()
    try:
        ensure_topics_and_tables(settings)
        yield settings, kafka
    finally:
        supervisor = StreamSupervisor(settings, EXCHANGE)
        supervisor.request_stop(timeout_s=60)
        supervisor.close()
        kafka.stop()
    assert not kafka.status().running and not kafka.data_dir_locked()


def test_a_node_killed_under_load_loses_and_duplicates_nothing(kafka_cluster) -> None:
    from confluent_kafka.admin import AdminClient, ConfigResource

    settings, kafka = kafka_cluster
    topic = settings.topic_for(EXCHANGE)
    admin = AdminClient({"bootstrap.servers": settings.kafka.bootstrap_servers})
    metadata = admin.list_topics(topic, timeout=30)
    assert len(metadata.brokers) == NODES
    assert all(len(p.replicas) == NODES for p in metadata.topics[topic].partitions.values())
    (config,) = admin.describe_configs([ConfigResource(ConfigResource.Type.TOPIC, topic)]).values()
    assert config.result(timeout=30)["min.insync.replicas"].value == "2"

    paths = StreamPaths.of(settings, EXCHANGE)
    supervisor = StreamSupervisor(settings, EXCHANGE)
    stop = threading.Event()
    supervision = threading.Thread(
        target=supervisor.supervise, args=(3600,), kwargs={"should_continue": lambda: not stop.is_set()}, daemon=True
    )
    supervision.start()
    feed = BackgroundFeed(settings, rate=400)
    try:
        wait_for(lambda: running_job(paths), 240, "the supervised stream's first batch")
        leader = metadata.topics[topic].partitions[0].leader
        victim = kafka.nodes[leader - 1]
        os.kill(victim.status().pid, signal.SIGKILL)
        killed_at = time.time()
        # the stream goes on (or is restarted) on the two nodes left, and commits records sent after the kill
        wait_for(lambda: running_job(paths, after=killed_at + 10), 300, "Bronze commits after the node's death")
        summary = feed.finish()
        assert summary.delivery.failed == 0 and summary.delivery.delivered > 0
        assert not victim.status().running and sum(n.status().running for n in kafka.nodes) == NODES - 1
        ends = end_offsets(settings)
        assert sum(ends.values()) >= summary.delivery.delivered  # every acknowledged record is in Kafka
        wait_for(lambda: len(bronze_coordinates(settings)) >= sum(ends.values()), 300, "Bronze to catch up")
        coords = bronze_coordinates(settings)
        assert len(coords) == len(set(coords)), "a record is in Bronze twice"
        for partition, end in ends.items():
            assert sorted(o for p, o in coords if p == partition) == list(range(end)), f"partition {partition} gap"
        # the stream publishes its progress as its consumer group's offsets: lag for any host and Kafka's tools
        group = offsets_consumer(settings.kafka, bronze_group(EXCHANGE))
        try:
            wait_for(lambda: group_offsets(group, topic) == ends, 60, "the group's offsets to reach the end")
        finally:
            group.close()
        assert kafka_lag(settings, EXCHANGE)[0] == 0
    finally:
        feed.finish()
        stop.set()
        supervision.join(60)
        supervisor.close()
