"""Live feeds against local fake exchanges (speaking each exchange's protocol) into the real broker.

Records are read back from the offsets the topic had before the test, and recognised by content
(trade ids from a per-run random range), because the exchange topics are shared with other tests.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import logging
import os
import random
import signal
import threading
import time
import uuid
from collections import Counter
from typing import Any

import pytest

from k2.errors import K2Error
from k2.exchanges import FrameKind, get_exchange
from k2.feeds.events import CONNECTION_KEY, is_connection_event
from k2.feeds.live import Backoff, LiveFeed, LiveFeedSummary, run_live_feed
from k2.feeds.producer import TradeProducer
from k2.settings import Settings
from tests.fakes.exchange_servers import FakeBinanceServer, FakeKrakenServer, binance_trade, kraken_trades
from tests.helpers import free_port, wait_for

pytestmark = pytest.mark.integration

_ids = itertools.count(random.randrange(10**12, 9 * 10**12))


def ids(n: int) -> list[int]:
    return [next(_ids) for _ in range(n)]


@pytest.fixture(scope="module")
def topics(kafka_broker, settings: Settings) -> Settings:
    from k2.kafka.topics import ensure_topics

    ensure_topics(settings)
    return settings


class RunningFeed:
    """A LiveFeed on its own event loop in a background thread; leaving the block stops it."""

    def __init__(
        self,
        settings: Settings,
        exchange: str,
        url: str,
        symbols: list[str],
        producer: TradeProducer | None = None,
        **options: Any,
    ) -> None:
        ex = get_exchange(exchange)
        self.producer = producer or TradeProducer(settings, ex)
        self.feed = LiveFeed(settings, ex, symbols, self.producer, url=url, **options)
        self.summary: LiveFeedSummary | None = None
        self.error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        try:
            self.summary = asyncio.run(self.feed.run())
        except BaseException as exc:
            self.error = exc

    def frames(self, kind: FrameKind) -> int:
        return self.feed.frames[kind]

    def __enter__(self) -> RunningFeed:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.feed.stop()
        self._thread.join(30)
        assert not self._thread.is_alive(), "the feed did not stop within 30 s"
        if self.error is not None and exc[0] is None:
            raise self.error


def end_offsets(settings: Settings, exchange: str) -> dict[int, int]:
    from confluent_kafka import Consumer, KafkaException, TopicPartition

    topic = settings.topic_for(exchange)
    consumer = Consumer({"bootstrap.servers": settings.kafka.bootstrap_servers, "group.id": "offsets"})

    def watermarks() -> dict[int, int] | None:
        try:
            parts = consumer.list_topics(topic, timeout=10).topics[topic].partitions
            return {p: consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=10)[1] for p in parts}
        except KafkaException:  # a topic created moments ago may not have its leaders yet
            return None

    try:
        return wait_for(watermarks, 20, f"the end offsets of {topic}")
    finally:
        consumer.close()


def records_since(
    settings: Settings, exchange: str, start: dict[int, int], marker: set[bytes] | None, *, events: bool = False
) -> list[Any]:
    """Every record produced after ``start`` whose value is one of ``marker`` (``events``: every
    connection event, k2.feeds.events), in partition order."""
    from confluent_kafka import Consumer, TopicPartition

    topic = settings.topic_for(exchange)
    end = end_offsets(settings, exchange)
    consumer = Consumer(
        {
            "bootstrap.servers": settings.kafka.bootstrap_servers,
            "group.id": f"live-test-{uuid.uuid4()}",
            "auto.offset.reset": "earliest",
            "enable.auto.commit": False,
        }
    )
    pending = {p for p in end if end[p] > start.get(p, 0)}
    consumer.assign([TopicPartition(topic, p, start.get(p, 0)) for p in pending])
    found: list[Any] = []
    deadline = time.monotonic() + 20
    try:
        while pending and time.monotonic() < deadline:
            msg = consumer.poll(0.5)
            if msg is None or msg.error():
                continue
            if (
                (is_connection_event(msg.headers()) and msg.key() == CONNECTION_KEY)
                if events
                else msg.value() in marker
            ):
                found.append(msg)
            if msg.offset() + 1 >= end[msg.partition()]:
                pending.discard(msg.partition())
    finally:
        consumer.close()
    assert not pending, f"could not read partitions {pending} of {topic} to their end"
    return found


def assert_headers(msg: Any, exchange: str, since_us: int) -> None:
    headers = dict(msg.headers())
    assert headers["exchange"] == exchange.encode()
    assert headers["format"] == get_exchange(exchange).payload_format.encode()
    assert since_us <= int(headers["received_at"]) <= time.time_ns() // 1000


def test_binance_trades_arrive_byte_for_byte_and_none_are_lost_across_a_dropped_connection(topics: Settings) -> None:
    t0 = time.time_ns() // 1000
    before = end_offsets(topics, "binance")
    trade_ids = ids(8)
    frames = [binance_trade("BTCUSDT" if i % 2 else "ETHUSDT", tid) for i, tid in enumerate(trade_ids)]
    with (
        FakeBinanceServer(ping_interval_s=0.1) as server,
        RunningFeed(topics, "binance", server.url, ["BTCUSDT", "ETHUSDT"]) as feed,
    ):
        server.drop_after(4)  # abort TCP after 4 frames; the other 4 must go out on the next connection
        server.send(*frames)
        wait_for(
            lambda: server.connections == 2 and feed.frames(FrameKind.TRADES) == 8, 10, "a reconnect and all 8 trades"
        )
        wait_for(lambda: server.pongs >= 1, 5, "the client to answer a WebSocket ping")
    summary = feed.summary
    assert summary is not None and summary.ok
    assert server.streams == [["btcusdt@trade", "ethusdt@trade"]] * 2
    assert summary.reconnects == 1 and summary.retry_reasons == {"connection_closed": 1}
    assert summary.published == 8 and summary.delivery.delivered == 8 + summary.events
    # connected, disconnected (connection_closed), connected, disconnected (stopped): k2.feeds.events
    events = [json.loads(m.value()) for m in records_since(topics, "binance", before, None, events=True)]
    assert [(e["event"], e["reason"], e["connection"]) for e in events] == [
        ("connected", "", 1),
        ("disconnected", "connection_closed", 1),
        ("connected", "", 2),
        ("disconnected", "stopped", 2),
    ]
    assert summary.events == 4 and all(t0 <= e["at_us"] <= time.time_ns() // 1000 for e in events)

    records = records_since(topics, "binance", before, set(frames))
    assert Counter(m.value() for m in records) == Counter(frames)  # each exactly once, unchanged
    for msg in records:
        symbol = "BTCUSDT" if b'"s":"BTCUSDT"' in msg.value() else "ETHUSDT"
        assert msg.key() == symbol.encode()
        assert_headers(msg, "binance", t0)
    per_key = [m.value() for m in records if m.key() == b"BTCUSDT"]
    assert per_key == [f for f in frames if b"BTCUSDT" in f]  # ordered per symbol


def test_kraken_subscribes_and_a_batch_message_stays_one_record(topics: Settings) -> None:
    t0 = time.time_ns() // 1000
    before = end_offsets(topics, "kraken")
    snap, batch, single = ids(3), ids(4), ids(1)
    snapshot = kraken_trades("BTC/USD", snap, snapshot=True)
    updates = [kraken_trades("ETH/USD", batch), kraken_trades("BTC/USD", single)]
    with (
        FakeKrakenServer(heartbeat_s=0.05, snapshot=[snapshot]) as server,
        RunningFeed(topics, "kraken", server.url, ["BTC/USD", "ETH/USD"], ping_interval_s=0.2) as feed,
    ):
        server.send(*updates)
        wait_for(lambda: feed.frames(FrameKind.TRADES) == 3, 10, "the snapshot and 2 updates")
        # status + one ack per symbol + a pong are control frames: counted, never published
        wait_for(
            lambda: feed.frames(FrameKind.CONTROL) >= 4 and feed.frames(FrameKind.HEARTBEAT) >= 2,
            5,
            "the status, 2 acks, a pong and heartbeats",
        )
    summary = feed.summary
    assert summary is not None and summary.ok and summary.connections == 1
    assert server.sent_by_clients(1)[0] == {
        "method": "subscribe",
        "params": {"channel": "trade", "symbol": ["BTC/USD", "ETH/USD"], "snapshot": True},
    }
    assert any(m.get("method") == "ping" for m in server.sent_by_clients(1) if isinstance(m, dict))
    assert server.pings_answered >= 1 and summary.frames["control"] >= 4
    assert summary.published == 3

    records = records_since(topics, "kraken", before, {snapshot, *updates})
    assert sorted((m.key(), m.value()) for m in records) == sorted(
        [(b"BTC/USD", snapshot), (b"ETH/USD", updates[0]), (b"BTC/USD", updates[1])]
    )
    for msg in records:
        assert_headers(msg, "kraken", t0)


def test_kraken_silence_trips_the_idle_timeout_and_the_feed_resubscribes(topics: Settings) -> None:
    before = end_offsets(topics, "kraken")
    after = kraken_trades("SOL/USD", ids(2))
    with (
        FakeKrakenServer(heartbeat_s=0.05) as server,
        RunningFeed(topics, "kraken", server.url, ["SOL/USD"], idle_timeout_s=0.5) as feed,
    ):
        wait_for(lambda: feed.frames(FrameKind.HEARTBEAT) >= 3, 5, "heartbeats on the first connection")
        server.go_silent()
        server.send(after)  # held back while silent: goes out on the next connection
        wait_for(lambda: server.connections == 2, 10, "a reconnect after the idle timeout")
        wait_for(lambda: feed.frames(FrameKind.TRADES) == 1, 5, "the trade sent after the reconnect")
    summary = feed.summary
    assert summary is not None and summary.ok
    assert summary.retry_reasons == {"idle_timeout": 1}
    assert server.subscriptions == [["SOL/USD"], ["SOL/USD"]]  # subscribed again on the new connection
    assert [m.value() for m in records_since(topics, "kraken", before, {after})] == [after]


def test_malformed_and_unexpected_frames_are_published_unchanged_and_counted(topics: Settings) -> None:
    before = end_offsets(topics, "binance")
    tag = str(next(_ids)).encode()
    truncated = b'{"stream":"btcusdt@trade","data":{"e":"trade","t":' + tag
    garbage = b"not json at all " + tag
    other_stream = b'{"stream":"btcusdt@aggTrade","data":{"e":"aggTrade","s":"BTCUSDT","a":' + tag + b"}}"
    binary = b"\xff\x00binary " + tag
    error = b'{"error":{"code":2,"msg":"Invalid request ' + tag + b'"}}'
    trade = binance_trade("BTCUSDT", next(_ids))
    with FakeBinanceServer() as server, RunningFeed(topics, "binance", server.url, ["BTCUSDT"]) as feed:
        server.send(truncated, garbage, other_stream)
        server.send_binary(binary)
        server.send(error, trade)
        wait_for(lambda: feed.frames(FrameKind.TRADES) == 1, 10, "the trade after the bad frames")
    summary = feed.summary
    assert summary is not None and summary.ok and summary.connections == 1  # bad frames don't reconnect
    assert summary.frames["unknown"] == 4 and summary.frames["error"] == 1 and summary.frames["trades"] == 1
    assert summary.published == 5

    sent = {truncated, garbage, other_stream, binary, error, trade}
    records = records_since(topics, "binance", before, sent)
    assert sorted((m.value(), m.key()) for m in records) == sorted(
        [(truncated, b""), (garbage, b""), (binary, b""), (other_stream, b"BTCUSDT"), (trade, b"BTCUSDT")]
    )


def test_a_connection_is_replaced_cleanly_when_it_reaches_the_maximum_age(topics: Settings) -> None:
    before = end_offsets(topics, "binance")
    late = binance_trade("BTCUSDT", next(_ids))
    with (
        FakeBinanceServer() as server,
        RunningFeed(topics, "binance", server.url, ["BTCUSDT"], max_connection_age_s=1.0) as feed,
    ):
        wait_for(lambda: server.connections >= 2, 10, "the connection to be replaced at max age")
        server.send(late)
        wait_for(lambda: feed.frames(FrameKind.TRADES) == 1, 5, "a trade on the replacement connection")
        wait_for(lambda: server.close_codes, 5, "the server to see the first connection closed")
    summary = feed.summary
    assert summary is not None and summary.ok
    assert set(summary.retry_reasons) == {"max_connection_age"}
    assert server.close_codes[0] == 1000  # closed by the client on its own terms, not dropped
    assert [m.value() for m in records_since(topics, "binance", before, {late})] == [late]


def test_an_unreachable_exchange_is_retried_with_backoff_not_a_crash(topics: Settings) -> None:
    url = f"ws://127.0.0.1:{free_port()}/stream"  # nothing listens there
    with RunningFeed(topics, "binance", url, ["BTCUSDT"], backoff=Backoff(base_s=0.02, cap_s=0.1)) as feed:
        wait_for(lambda: feed.feed.retry_reasons.get("connect_failed", 0) >= 4, 10, "repeated attempts")
        assert feed.error is None
    summary = feed.summary
    assert summary is not None and summary.connections == 0 and summary.published == 0
    assert summary.retry_reasons["connect_failed"] >= 4 and set(summary.retry_reasons) == {"connect_failed"}


def test_a_bad_url_is_a_k2error_before_any_connection(topics: Settings, monkeypatch: pytest.MonkeyPatch) -> None:
    binance = get_exchange("binance")
    producer = TradeProducer(topics, binance)
    with pytest.raises(K2Error) as err:
        LiveFeed(topics, binance, ["BTCUSDT"], producer, url="https://stream.binance.com/stream")
    assert "ws://" in err.value.fix
    monkeypatch.setenv("K2_BINANCE_WS_URL", "stream.binance.com:9443")  # scheme forgotten
    with pytest.raises(K2Error, match="not a usable WebSocket URL"):
        LiveFeed(topics, binance, ["BTCUSDT"], producer)
    producer.close(5)


def test_delivery_failures_are_visible_in_the_summary(topics: Settings) -> None:
    nowhere = topics.with_overrides(kafka_bootstrap_servers=f"127.0.0.1:{free_port()}")
    quiet = {"message.timeout.ms": 1000, "logger": logging.getLogger("tests.unreachable_kafka")}  # no C stderr
    producer = TradeProducer(nowhere, get_exchange("binance"), **quiet)
    with (
        FakeBinanceServer() as server,
        RunningFeed(topics, "binance", server.url, ["BTCUSDT"], producer=producer) as feed,
    ):
        server.send(*(binance_trade("BTCUSDT", tid) for tid in ids(3)))
        wait_for(lambda: feed.frames(FrameKind.TRADES) == 3, 10, "3 trades received")
    summary = feed.summary
    assert summary is not None and not summary.ok
    assert summary.published == 3 and summary.delivery.failed == 3 + summary.events
    assert summary.events == 2 and summary.delivery.delivered == 0  # connected, disconnected (stopped)


def test_sigterm_stops_run_live_feed_gracefully_and_flushes(topics: Settings) -> None:
    before = end_offsets(topics, "kraken")
    frame = kraken_trades("BTC/USD", ids(2))
    kraken = get_exchange("kraken")
    producer = TradeProducer(topics, kraken)
    previous = signal.getsignal(signal.SIGTERM)

    def terminate_once_published() -> None:
        try:
            # the connected event, then the trade
            wait_for(lambda: producer.stats.produced >= 2, 10, "the trade to be published")
        finally:  # always: without SIGTERM run_live_feed never returns (the assertions below fail instead)
            os.kill(os.getpid(), signal.SIGTERM)

    with FakeKrakenServer() as server:
        server.send(frame)
        killer = threading.Thread(target=terminate_once_published, daemon=True)
        killer.start()
        # had run_live_feed not installed its handler, SIGTERM would end the whole test run
        summary = run_live_feed(topics, kraken, ["BTC/USD"], producer, url=server.url)
        killer.join(5)
        wait_for(lambda: server.close_codes, 5, "the server to see the connection closed")
    assert summary.ok and summary.published == 1 and summary.delivery.delivered == 1 + summary.events == 3
    assert server.close_codes == [1001]  # the socket was closed as "going away", not abandoned
    assert signal.getsignal(signal.SIGTERM) is previous  # the handler is restored afterwards
    assert [m.value() for m in records_since(topics, "kraken", before, {frame})] == [frame]
