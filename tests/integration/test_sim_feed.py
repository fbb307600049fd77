"""Simulated feeds into the real broker, read back by a plain Kafka consumer outside K2."""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest
from confluent_kafka import Consumer, TopicPartition

from k2.errors import K2Error
from k2.exchanges import get_exchange
from k2.feeds.producer import TradeProducer
from k2.feeds.runner import run_simulated_feed
from k2.feeds.simulator import FaultPlan, TradeSimulator
from k2.kafka.topics import ensure_topics
from k2.settings import Settings
from tests.helpers import free_port

pytestmark = pytest.mark.integration
START_US = 1_760_000_000_000_000


@pytest.fixture
def own_topics(kafka_broker, settings: Settings) -> Settings:
    """Settings whose exchange topics are fresh and used by this test only."""
    scoped = settings.with_overrides(topic_template=f"test-{uuid.uuid4().hex[:8]}.{{exchange}}.raw")
    ensure_topics(scoped)
    return scoped


def read_all(settings: Settings, topic: str, expected: int, timeout: float = 60.0) -> list:
    """Every record of ``topic`` (until ``expected`` arrived), read by an independent consumer."""
    consumer = Consumer(
        {
            "bootstrap.servers": settings.kafka.bootstrap_servers,
            "group.id": uuid.uuid4().hex,
            "auto.offset.reset": "earliest",
            "enable.auto.commit": False,
        }
    )
    consumer.subscribe([topic])
    records: list = []
    deadline = time.monotonic() + timeout
    try:
        while len(records) < expected and time.monotonic() < deadline:
            for msg in consumer.consume(1000, timeout=0.5):
                assert msg.error() is None, msg.error()
                records.append(msg)
    finally:
        consumer.close()
    return records


@pytest.mark.parametrize("name", ["binance", "kraken"])
def test_native_payloads_keys_and_headers_reach_kafka(own_topics: Settings, name: str) -> None:
    exchange = get_exchange(name)
    symbols = list(exchange.default_symbols)
    producer = TradeProducer(own_topics, exchange)
    producer.check_ready()
    summary = run_simulated_feed(producer, exchange, symbols, rate=0, count=3000, seed=11, start_us=START_US)
    assert summary.ok and summary.messages == 3000 and summary.delivery.delivered == 3000

    records = read_all(own_topics, own_topics.topic_for(name), 3000)
    assert len(records) == 3000
    # the simulator is deterministic: regenerate what was sent and compare byte for byte
    expected = TradeSimulator(exchange, symbols, seed=11, rate=0, start_us=START_US).next_batch()
    sent = dict(zip(expected.payloads, expected.keys, strict=True))
    by_partition: dict[int, list] = {}
    for msg in records:
        by_partition.setdefault(msg.partition(), []).append(msg)
    for msgs in by_partition.values():
        assert [m.offset() for m in msgs] == list(range(len(msgs)))  # contiguous, nothing lost
    for msg in records[:2048]:
        if msg.value() in sent:
            assert msg.key() == sent[msg.value()]
    assert sum(m.value() in sent for m in records) == 2048
    headers = dict(records[0].headers())
    assert headers["exchange"] == name.encode()
    assert headers["format"] == exchange.payload_format.encode()
    assert abs(int(headers["received_at"]) / 1e6 - time.time()) < 120
    keys = {m.key().decode() for m in records}
    assert keys == set(symbols)
    # one key, one partition: per-symbol order is kept
    assert all(len({m.partition() for m in records if m.key() == k.encode()}) == 1 for k in keys)


def test_fault_manifest_matches_what_a_consumer_reads(own_topics: Settings, tmp_path: Path) -> None:
    exchange = get_exchange("kraken")
    manifest_path = tmp_path / "manifest.json"
    producer = TradeProducer(own_topics, exchange)
    plan = FaultPlan(duplicate=0.02, malformed=0.02, late=0.02, out_of_order=0.02)
    summary = run_simulated_feed(
        producer,
        exchange,
        list(exchange.default_symbols),
        rate=0,
        count=5000,
        seed=3,
        faults=plan,
        manifest_path=manifest_path,
    )
    assert summary.ok
    manifest = json.loads(manifest_path.read_text())
    entries = manifest["entries"]
    assert manifest["messages"] == 5000
    assert manifest["fault_counts"] == summary.faults
    assert set(manifest["fault_counts"]) == {"duplicate", "malformed", "late", "out_of_order"}

    records = {(m.partition(), m.offset()): m for m in read_all(own_topics, producer.topic, 5000)}
    assert len(records) == 5000
    for entry in entries:
        assert entry["delivered"] is True
        record = records[(entry["partition"], entry["offset"])]
        assert hashlib.sha256(record.value()).hexdigest() == entry["payload_sha256"]
        assert record.key().decode() == entry["key"]
        if entry["fault"] == "duplicate":
            twins = [m for m in records.values() if m.value() == record.value()]
            assert len(twins) >= 2
        if entry["fault"] == "malformed" and entry["detail"] in ("truncated_json", "not_utf8", "empty"):
            with pytest.raises(ValueError):
                json.loads(record.value())


def test_paced_run_keeps_the_exact_rate(own_topics: Settings) -> None:
    exchange = get_exchange("binance")
    producer = TradeProducer(own_topics, exchange, report_successes=False)
    summary = run_simulated_feed(producer, exchange, ["BTCUSDT"], rate=2000, duration_s=2.0)
    assert summary.messages == 4000
    assert 1.95 <= summary.elapsed_s <= 2.3
    assert summary.delivery.delivered == 4000 and summary.delivery.failed == 0


def test_full_local_queue_applies_backpressure_and_loses_nothing(own_topics: Settings) -> None:
    exchange = get_exchange("binance")
    producer = TradeProducer(own_topics, exchange, **{"queue.buffering.max.messages": 200})
    summary = run_simulated_feed(producer, exchange, ["BTCUSDT", "ETHUSDT"], rate=0, count=20_000)
    assert summary.delivery.backpressure_waits > 0
    assert summary.delivery.delivered == 20_000 and summary.ok
    assert len(read_all(own_topics, producer.topic, 20_000)) == 20_000


def test_delivery_failures_are_counted_not_dropped(settings: Settings) -> None:
    dead = settings.with_overrides(kafka_bootstrap_servers=f"127.0.0.1:{free_port()}")
    producer = TradeProducer(dead, get_exchange("binance"), **{"message.timeout.ms": 1500})
    with pytest.raises(K2Error, match="cannot reach Kafka"):
        producer.check_ready(timeout=1.0)
    for i in range(10):
        producer.publish(b'{"n":%d}' % i, b"BTCUSDT")
    stats = producer.close(timeout=10)
    assert stats.failed == 10 and stats.delivered == 0
    assert sum(stats.errors.values()) == 10


def test_cli_feed_runs_and_reports(own_topics: Settings) -> None:
    env = {
        "PATH": "/usr/bin:/bin",
        "K2_HOME": str(own_topics.home),
        "K2_KAFKA_PORT": str(own_topics.kafka.port),
        "K2_TOPIC_TEMPLATE": own_topics.topics.template,
        "K2_LOG_FORMAT": "logfmt",
    }
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "k2.cli",
            "feed",
            "--exchange",
            "kraken",
            "--rate",
            "500",
            "--count",
            "500",
            "--symbols",
            "BTC/USD,ETH/USD",
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    rows = dict(line.split(None, 1) for line in result.stdout.splitlines()[2:] if line.strip())
    assert rows["messages"].strip() == "500" and rows["failed"].strip() == "0"
    assert "event=feed.finished" in result.stderr

    bad = subprocess.run(
        [sys.executable, "-m", "k2.cli", "feed", "--exchange", "kraken", "--symbols", "XBTUSD"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert bad.returncode == 2 and "not a Kraken v2 symbol" in bad.stderr


def test_watermarks_match_delivered(own_topics: Settings) -> None:
    """Kafka's own offsets agree with the producer's delivery count."""
    exchange = get_exchange("kraken")
    producer = TradeProducer(own_topics, exchange)
    summary = run_simulated_feed(producer, exchange, list(exchange.default_symbols), rate=0, count=1234)
    consumer = Consumer({"bootstrap.servers": own_topics.kafka.bootstrap_servers, "group.id": "wm"})
    try:
        total = sum(
            consumer.get_watermark_offsets(TopicPartition(producer.topic, p), timeout=10)[1]
            for p in range(own_topics.topics.partitions)
        )
    finally:
        consumer.close()
    assert total == summary.delivery.delivered == 1234
