"""k2.query against a real broker, Spark and Iceberg: for a window the batch has processed, the
hybrid answer is Silver/Gold exactly; for a window that spans Silver, unprocessed Bronze and the
Kafka tail (late trades into processed bars, duplicates across the layers, poison records), the
answer equals what Silver/Gold hold after the next batch run."""

from __future__ import annotations

import datetime as dt
import json
import uuid
import warnings

import pytest

import k2.query as q
from k2.kafka.topics import ensure_topics
from k2.lake.tables import SILVER_TRADES, gold_table
from k2.medallion.interval import Interval
from k2.medallion.job import run
from k2.streams.state import StreamPaths
from tests.helpers import wait_for
from tests.integration.medallion_fixtures import binance, own_lake, write_bronze

pytestmark = pytest.mark.integration

UTC = dt.UTC
HOUR = dt.timedelta(hours=1)
T = dt.datetime.now(UTC).replace(minute=0, second=0, microsecond=0) - 2 * HOUR  # two whole hours in the past
TRADE_COLUMNS = (
    "exchange",
    "symbol",
    "exchange_symbol",
    "trade_id",
    "event_time",
    "price",
    "quantity",
    "quote_amount",
    "taker_side",
    "kafka_topic",
    "kafka_partition",
    "kafka_offset",
    "kafka_timestamp",
)


def iso(offset: dt.timedelta) -> str:
    return (T + offset).strftime("%Y-%m-%dT%H:%M:%S.%f")


def s(seconds: float) -> dt.timedelta:
    return dt.timedelta(seconds=seconds)


def trade(t: int, price: str, seconds: float, **kw) -> bytes:
    return binance(t, price, "0.50000", iso(s(seconds)), **kw)


# (value, Kafka timestamp offset from T); A: ingested in hour 1, B: in hour 2, C: only in Kafka
GROUP_A = [
    (trade(1, "100.00", 5), 40),
    (trade(2, "101.00", 30, buyer_maker=True), 40),
    (trade(3, "99.50", 70), 80),  # minute 1
    (trade(1, "100.00", 5), 40),  # duplicate within the batch
    (trade(4, "abc", 20), 40),  # poison: a dead letter
    (trade(5, "100.50", 75, symbol="ETHUSDT"), 80),
]
GROUP_B = [
    (trade(6, "98.00", 80), 3630),  # late, into processed minute 1
    (trade(7, "103.00", 3610), 3630),  # hour 2
    (trade(2, "101.00", 30, buyer_maker=True), 3630),  # duplicate of a Silver trade
    (b'{"result":null,"id":1}', 3630),
]
GROUP_C = [
    (trade(8, "97.00", 110), 3650),  # late, into minute 1 again: the bar is computed on the fly
    (trade(9, "104.00", 3640), 3650),
    (trade(7, "103.00", 3610), 3650),  # duplicate of an unprocessed Bronze trade
    (trade(10, "-1", 3645), 3650),  # poison
]


def produce(settings, records: list[tuple[bytes, float]]) -> list[tuple[int, int, str, bytes]]:
    """Publishes to partition 0 with the given Kafka timestamps; (partition, offset, iso ts, value) each."""
    from confluent_kafka import Producer

    producer = Producer(
        {"bootstrap.servers": settings.kafka.bootstrap_servers, "enable.idempotence": True, "log_level": 0}
    )
    delivered: list = []
    topic = settings.topic_for("binance")
    for value, seconds in records:
        stamp = int((T + s(seconds)).timestamp() * 1000)
        producer.produce(
            topic,
            value,
            key=b"BTCUSDT",
            partition=0,
            timestamp=stamp,
            on_delivery=lambda e, m: delivered.append((e, m)),
        )
    assert producer.flush(30) == 0
    assert all(e is None for e, _ in delivered)
    return [
        (m.partition(), m.offset(), iso(s(sec)), m.value()) for (_, m), (_, sec) in zip(delivered, records, strict=True)
    ]


def to_bronze(spark, settings, delivered, ingested: dt.timedelta) -> None:
    write_bronze(spark, settings, "binance", [(p, o, ts, v, iso(ingested)) for p, o, ts, v in delivered])


def committed(settings, end_offset: int) -> None:
    """The Bronze stream's progress: what its last batch committed."""
    paths = StreamPaths.of(settings, "binance")
    paths.root.mkdir(parents=True, exist_ok=True)
    paths.progress.write_text(json.dumps({"end_offsets": {settings.topic_for("binance"): {"0": end_offset}}}))


def batch(spark, settings, hour: int) -> None:
    interval = Interval("binance", T + hour * HOUR, T + (hour + 1) * HOUR)
    for layer in ("silver", "gold"):
        run(spark, settings, layer, interval, lambda layer, frame, interval: {"gate": "off in this test"})


def lake_rows(settings, identifier: str, start: dt.datetime, end: dt.datetime, column: str) -> list[dict]:
    from pyiceberg.expressions import And, GreaterThanOrEqual, LessThan

    from k2.lake.catalog import load_catalog

    where = And(GreaterThanOrEqual(column, start.isoformat()), LessThan(column, end.isoformat()))
    return load_catalog(settings.lake).load_table(identifier).scan(row_filter=where).to_arrow().to_pylist()


def silver(settings, start, end) -> list[tuple]:
    rows = lake_rows(settings, SILVER_TRADES.identifier, start, end, "event_time")
    return sorted(tuple(r[c] for c in TRADE_COLUMNS) for r in rows)


def gold(settings, interval, start, end) -> list[dict]:
    rows = lake_rows(settings, gold_table(interval).identifier, start, end, "bar_start")
    return sorted(
        ({k: v for k, v in r.items() if k != "computed_at"} for r in rows), key=lambda r: (r["symbol"], r["bar_start"])
    )


def hybrid_trades(settings, start, end) -> list[tuple]:
    table = q.trades(["binance"], None, start=start, end=end, settings=settings)
    return sorted(tuple(r[c] for c in TRADE_COLUMNS) for r in table.to_pylist())


def hybrid_bars(settings, interval, start, end) -> list[dict]:
    rows = q.bars(interval, ["binance"], None, start=start, end=end, settings=settings).to_pylist()
    return sorted(rows, key=lambda r: (r["symbol"], r["bar_start"]))


def filled(spark, scoped):
    """A in Silver and Gold, B in Bronze only, C in Kafka only; the settings and C's records."""
    ensure_topics(scoped)
    a, b, c = produce(scoped, GROUP_A), produce(scoped, GROUP_B), produce(scoped, GROUP_C)
    to_bronze(spark, scoped, a, s(50))
    to_bronze(spark, scoped, b, s(3660))
    committed(scoped, b[-1][1] + 1)  # C waits in Kafka
    batch(spark, scoped, 0)
    return scoped, c


@pytest.fixture
def lake(spark, kafka_broker, settings, tmp_path):
    port = int(settings.kafka.bootstrap_servers.rsplit(":", 1)[1])
    topics = f"q-{uuid.uuid4().hex[:8]}.{{exchange}}.raw"
    return filled(spark, own_lake(spark, tmp_path / "home", kafka_port=port, topic_template=topics))


@pytest.fixture
def lake_on_own_broker(spark, jars, tmp_path):
    """The same lake on a broker of the test's own, which the test stops (the session's serves the others)."""
    from k2.runtime.broker import LocalKafkaBroker

    scoped = own_lake(spark, tmp_path / "home")
    broker = LocalKafkaBroker(scoped)
    broker.start()
    try:
        yield filled(spark, scoped), broker
    finally:
        broker.stop()


def test_processed_window_equals_silver_and_gold(lake) -> None:
    settings, _ = lake
    window = (T, T + s(60))  # minute 0: every trade of it is in Silver and Gold
    assert len(silver(settings, *window)) == 2
    assert hybrid_trades(settings, *window) == silver(settings, *window)
    assert hybrid_bars(settings, "1m", *window) == gold(settings, "1m", *window)


def test_spanning_window_equals_the_next_batch(spark, lake) -> None:
    settings, in_kafka_only = lake
    window = (T, T + 2 * HOUR)
    trades = hybrid_trades(settings, *window)
    bars = {i: hybrid_bars(settings, i, *window) for i in ("1m", "5m", "1h")}
    btc = btc_trades(settings, window)
    counted = q.sql("SELECT count(*) AS n FROM trades", ["binance"], start=window[0], end=window[1], settings=settings)
    assert counted.to_pylist() == [{"n": len(trades)}]
    before = silver(settings, *window)
    assert len(trades) == len(before) + 4  # 6 and 7 from Bronze, 8 and 9 from Kafka
    served = served_answers(settings, window)
    assert served["trades"] == trades
    assert served["btc"] == sorted(tuple(r[c] for c in TRADE_COLUMNS) for r in btc)
    assert served["bars"] == bars
    to_bronze(spark, settings, in_kafka_only, s(3670))  # the stream catches up; the next batch runs
    batch(spark, settings, 1)
    assert trades == silver(settings, *window)
    assert sorted(tuple(r[c] for c in TRADE_COLUMNS) for r in btc) == [t for t in trades if t[1] == "BTC-USDT"]
    assert {r["symbol"] for r in btc} == {"BTC-USDT"}
    for interval, rows in bars.items():
        assert rows == gold(settings, interval, *window), interval
    minute_1 = next(r for r in bars["1m"] if r["bar_start"] == T + s(60) and r["symbol"] == "BTC-USDT")
    assert (minute_1["trade_count"], str(minute_1["low"]).rstrip("0")) == (3, "97.")


def add_partition(settings) -> None:
    from confluent_kafka.admin import AdminClient, NewPartitions

    admin = AdminClient({"bootstrap.servers": settings.kafka.bootstrap_servers})
    topic = settings.topic_for("binance")
    partitions = len(admin.list_topics(topic, timeout=10).topics[topic].partitions)
    admin.create_partitions([NewPartitions(topic, partitions + 1)])[topic].result(timeout=30)


def btc_trades(settings, window) -> list[dict]:
    return q.trades(["binance"], ["BTCUSDT"], start=window[0], end=window[1], settings=settings).to_pylist()


def served_answers(settings, window) -> dict:
    """The same queries through a query server (k2 query serve), which judged the records on arrival."""
    from k2.query.live import protocol
    from k2.query.live.server import QueryServer

    server = QueryServer(settings)
    server.start()
    try:
        assert server.wait_ready(60) and server.status()["ready"], server.status()
        status = server.status()["feeds"]["binance"]
        # the valid candidates of records Silver has not processed: B's 6, 7, 2 and C's 8, 9, 7
        assert (status["caught_up"], status["unusable"], status["candidates"]) == (True, None, 6), status
        answers = {
            "trades": hybrid_trades(settings, *window),
            "btc": sorted(tuple(r[c] for c in TRADE_COLUMNS) for r in btc_trades(settings, window)),
            "bars": {i: hybrid_bars(settings, i, *window) for i in ("1m", "5m", "1h")},
        }
        # two trades queries, and each bars query twice: its minutes' partials, then the trades of
        # the minutes Silver has trades in too (the hour holds Silver's and fresh trades)
        assert server.answered["local"] == 0 and server.answered["live"] == 2 + 3 * 2, server.answered
        # an answer's header: where its fresh part came from and the seconds of each step of it
        request = {"op": "trades", "exchanges": ["binance"], "symbols": None, "start": window[0], "end": window[1]}
        how = protocol.ask(settings, request)[1]
        steps = how["fresh_s"]
        assert how["served"] == {"live": 1, "local": 0} and set(steps) == {"end_offsets", "reach_end", "store"}, how
        assert steps["reach_end"] >= steps["end_offsets"], how  # the broker's answer is part of the wait
        # a partition added while it runs is not followed: the exchange is judged at query time instead
        add_partition(settings)
        wait_for(lambda: server.status()["feeds"]["binance"]["unusable"], 30, "the server to give up the store")
        assert hybrid_trades(settings, *window) == answers["trades"]
        assert server.answered["local"] == 1, server.answered
        return answers
    finally:
        server.stop()


def test_with_kafka_out_of_reach_a_query_answers_from_the_lake_and_says_what_it_lacks(lake_on_own_broker) -> None:
    from k2.query.live.server import QueryServer

    (settings, in_kafka_only), broker = lake_on_own_broker
    window = (T, T + 2 * HOUR)
    whole = hybrid_trades(settings, *window)
    server = QueryServer(settings)
    server.start()
    try:
        assert server.wait_ready(60), server.status()
        broker.stop()
        # the store read every record before the broker went: the answer is whole, but cannot know it
        with pytest.warns(q.PartialAnswer, match="lacks binance's records the query server had not read") as warned:
            assert hybrid_trades(settings, *window) == whole
        assert "k2 kafka start" in warned[0].message.fix
    finally:
        server.stop()
    # without the server: Silver and Bronze answer, C (only in Kafka) is missing, and the answer says so
    kafka_only = {(p, o) for p, o, _, _ in in_kafka_only}
    with pytest.warns(q.PartialAnswer, match="lacks binance's records past Bronze's last commit"):
        assert hybrid_trades(settings, *window) == [t for t in whole if (t[10], t[11]) not in kafka_only]
    with pytest.warns(q.PartialAnswer):
        bars = hybrid_bars(settings, "1m", *window)
    minute_1 = next(r for r in bars if r["bar_start"] == T + s(60) and r["symbol"] == "BTC-USDT")
    assert minute_1["trade_count"] == 2  # 3 from Silver, 6 from Bronze; 8 is in Kafka only
    with warnings.catch_warnings():
        warnings.simplefilter("error", q.PartialAnswer)
        with pytest.raises(q.PartialAnswer, match="cannot read topic"):
            hybrid_trades(settings, *window)
