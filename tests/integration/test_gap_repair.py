"""Gap repair against local servers speaking each exchange's REST protocol, into the real broker.

Each test repairs a gap in a per-run random id range, reads back what arrived on the exchange's
topic since the test began, decodes it with the exchange's own rules (the ones Silver compiles) and
asserts the exact ids, values and headers; the servers answer with rate limits (HTTP 429 with
Retry-After, Kraken's rate-limit error), a 5xx and partial pages on the way.
"""

from __future__ import annotations

import datetime as dt
import itertools
import os
import random
import re
import subprocess
import sys
import time
import uuid
from decimal import Decimal
from typing import Any

import pytest

from k2.exchanges import get_exchange
from k2.exchanges.tail import parse_payload
from k2.gaps.model import Gap
from k2.gaps.repair import repair_gaps
from k2.settings import Settings
from tests.fakes.rest_servers import FakeBinanceRest, FakeKrakenRest, Trade, make_trades
from tests.integration.test_live_feed import end_offsets

pytestmark = pytest.mark.integration

_ids = itertools.count(random.randrange(10**12, 9 * 10**12), 100_000)
UTC = dt.UTC


@pytest.fixture(scope="module")
def topics(kafka_broker, settings: Settings) -> Settings:
    """Topics of this module's own: other tests read the session's exchange topics from the start."""
    from k2.kafka.topics import ensure_topics

    scoped = settings.with_overrides(topic_template=f"repair-{uuid.uuid4().hex[:8]}.{{exchange}}.raw")
    ensure_topics(scoped)
    return scoped


def repaired_since(settings: Settings, exchange: str, start: dict[int, int], key: bytes) -> list[Any]:
    """Records with ``key`` produced on the exchange's topic after ``start``, to the topic's end."""
    import uuid

    from confluent_kafka import Consumer, TopicPartition

    topic = settings.topic_for(exchange)
    end = end_offsets(settings, exchange)
    consumer = Consumer(
        {
            "bootstrap.servers": settings.kafka.bootstrap_servers,
            "group.id": f"repair-test-{uuid.uuid4()}",
            "enable.auto.commit": False,
        }
    )
    pending = {p for p in end if end[p] > start.get(p, 0)}
    consumer.assign([TopicPartition(topic, p, start.get(p, 0)) for p in pending])
    found: list[Any] = []
    deadline = time.monotonic() + 30
    try:
        while pending and time.monotonic() < deadline:
            msg = consumer.poll(0.5)
            if msg is None or msg.error():
                continue
            if msg.key() == key:
                found.append(msg)
            if msg.offset() + 1 >= end[msg.partition()]:
                pending.discard(msg.partition())
    finally:
        consumer.close()
    assert not pending, f"could not read partitions {pending} of {topic} to their end"
    return found


def decoded(exchange: str, records: list[Any], since_us: int) -> dict[int, dict]:
    """Trade id -> Silver's candidate for it, every record checked to be a clean live-format trade."""
    ex = get_exchange(exchange)
    out: dict[int, dict] = {}
    for msg in records:
        headers = dict(msg.headers())
        assert headers["exchange"] == exchange.encode() and headers["format"] == ex.payload_format.encode()
        assert headers["source"] == b"repair"
        assert since_us <= int(headers["received_at"]) <= time.time_ns() // 1000
        assert re.search(ex.rules.canonical, msg.value().decode()), msg.value()  # the live feed's own layout
        for trade in parse_payload(ex.rules, msg.value()):
            assert trade["parse_error"] is None, trade
            assert int(trade["trade_id"]) not in out, "published twice"
            out[int(trade["trade_id"])] = trade
    return out


def assert_values(found: dict[int, dict], trades: list[Trade]) -> None:
    for t in trades:
        got = found[t.trade_id]
        assert Decimal(got["price_text"]) == Decimal(t.price) and Decimal(got["quantity_text"]) == Decimal(t.qty)
        assert got["taker_side"] == ("sell" if t.buyer_is_maker else "buy")
        assert got["event_time"] == dt.datetime.fromtimestamp(0, UTC) + dt.timedelta(microseconds=t.time_us)


def test_a_binance_gap_is_fetched_by_id_through_rate_limits_errors_and_partial_pages(
    topics: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    first = next(_ids)
    start_us = (time.time_ns() // 1000 - 3_600_000_000) // 1000 * 1000  # Binance times are whole ms
    history = make_trades(first, 3000, start_us)
    gap_trades = history[100:2600]  # 2,500 missing ids
    g = Gap(
        "binance",
        "BTC-USDT",
        "BTCUSDT",
        gap_trades[0].trade_id,
        gap_trades[-1].trade_id,
        _at(history[99].time_us),
        _at(history[2600].time_us),
    )
    t0 = time.time_ns() // 1000
    before = end_offsets(topics, "binance")
    with FakeBinanceRest({"BTCUSDT": history}) as server:
        server.page_cap = 700  # partial pages: fewer trades than asked for
        server.fail_next(429, {"code": -1003, "msg": "Too much request weight used"}, {"Retry-After": "1"})
        server.fail_next(503, b"Service Unavailable")
        monkeypatch.setenv("K2_BINANCE_REST_URL", server.url)
        report = repair_gaps(topics, [g], request_interval_s=0.0)
        from_ids = [int(q["fromId"]) for q in server.queries(FakeBinanceRest.PATH)]
    [result] = report.gaps
    assert (result.fetched, result.published, result.still_missing, result.error) == (2500, 2500, 0, None)
    assert report.rate_limited == 1 and report.retried == 1 and report.waited_s >= 1.0  # Retry-After honoured
    # the 429 and the 503 repeat the first page; partial pages continue after their last id
    assert from_ids == [g.first_missing_id] * 3 + [g.first_missing_id + 700 * n for n in (1, 2, 3)]
    found = decoded("binance", repaired_since(topics, "binance", before, b"BTCUSDT"), t0)
    assert sorted(found) == [t.trade_id for t in gap_trades]  # exactly the gap: nothing before or after it
    assert_values(found, gap_trades)


def test_a_kraken_gap_is_fetched_by_time_through_rate_limits_and_partial_pages(
    topics: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    first = next(_ids)
    start_us = time.time_ns() // 1000 - 7_200_000_000
    history = make_trades(first, 1200, start_us, step_us=1_000)  # 1,000 trades a second
    gap_trades = history[500:900]
    g = Gap(
        "kraken",
        "BTC-USD",
        "BTC/USD",
        gap_trades[0].trade_id,
        gap_trades[-1].trade_id,
        _at(history[499].time_us),
        _at(history[900].time_us),
    )
    t0 = time.time_ns() // 1000
    before = end_offsets(topics, "kraken")
    with FakeKrakenRest({"XBTUSD": history}, {"XBTUSD": "XXBTZUSD"}) as server:
        server.page_cap = 250
        server.fail_next(200, {"error": ["EAPI:Rate limit exceeded"]})
        server.fail_next(429, b"", {"Retry-After": "1"})
        monkeypatch.setenv("K2_KRAKEN_REST_URL", server.url)
        report = repair_gaps(topics, [g], request_interval_s=0.0)
        queries = server.queries(FakeKrakenRest.PATH)
    [result] = report.gaps
    assert (result.fetched, result.published, result.still_missing, result.error) == (400, 400, 0, None)
    assert report.rate_limited == 2 and report.waited_s >= 1.0
    assert {q["pair"] for q in queries} == {"XBTUSD"}
    # pages start a second before the trade before the gap, then follow "last"
    assert int(queries[0]["since"]) == int(_at(history[499].time_us).timestamp() - 1) * 1_000_000_000
    found = decoded("kraken", repaired_since(topics, "kraken", before, b"BTC/USD"), t0)
    assert sorted(found) == [t.trade_id for t in gap_trades]
    assert_values(found, gap_trades)


def test_k2_gaps_repair_prints_progress_and_fails_a_refused_range(topics: Settings) -> None:
    first = next(_ids)
    history = make_trades(first, 50, (time.time_ns() // 1000 - 600_000_000) // 1000 * 1000)
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("K2_")},
        "K2_HOME": str(topics.home),
        "K2_KAFKA_PORT": str(topics.kafka.port),
        "K2_KAFKA_CONTROLLER_PORT": str(topics.kafka.controller_port),
        "K2_TOPIC_PARTITIONS": str(topics.topics.partitions),
        "K2_TOPIC_TEMPLATE": topics.topics.template,
    }
    before = end_offsets(topics, "binance")
    with FakeBinanceRest({"BTCUSDT": history}) as server:
        env["K2_BINANCE_REST_URL"] = server.url

        def k2(*args: str) -> subprocess.CompletedProcess:
            command = [sys.executable, "-m", "k2.cli", "gaps", "repair", "--exchange", "binance", *args]
            return subprocess.run(command, env=env, text=True, capture_output=True, timeout=120, check=False)

        ok = k2("--symbol", "BTCUSDT", "--from-id", str(first + 10), "--to-id", str(first + 19))
        refused = k2("--symbol", "ETHUSDT", "--from-id", "1", "--to-id", "2")
    assert ok.returncode == 0, ok.stderr
    assert f"binance BTCUSDT ids {first + 10}-{first + 19}: 10 missing, fetching from {server.url}" in ok.stdout
    assert "page 1 at" in ok.stdout
    ids = f"{first + 10}-{first + 19}"
    row = next(cells for cells in map(str.split, ok.stdout.splitlines()) if cells[2:3] == [ids])  # the table's
    assert row[3:7] == ["10", "10", "10", "0"]  # missing, fetched, published, still missing
    assert sorted(decoded("binance", repaired_since(topics, "binance", before, b"BTCUSDT"), 0)) == list(
        range(first + 10, first + 20)
    )
    assert refused.returncode == 1
    assert "HTTP 400" in refused.stdout and "Invalid symbol" in refused.stdout
    assert "1 of 1 gaps failed" in refused.stderr


def _at(us: int) -> dt.datetime:
    return dt.datetime.fromtimestamp(0, UTC) + dt.timedelta(microseconds=us)
