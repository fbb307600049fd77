"""Gaps in the trade ids on a real broker, Spark and Iceberg: trades with holes in their ids and a
feed disconnect are published to Kafka by K2's producer and taken into Bronze with their Kafka
coordinates, keys and headers; the batch records each gap (explained or not), Gold's bars say they
are incomplete, monitoring counts the missing trades and opens a warning. The missing trades then
arrive through Kafka like any late trade: the next batch closes the gaps, the bars become
complete and the incident resolves."""

from __future__ import annotations

import datetime as dt
import uuid

import pytest

from k2.exchanges import get_exchange
from k2.feeds.events import CONNECTED, DISCONNECTED, ConnectionEvent
from k2.feeds.producer import TradeProducer
from k2.gaps.store import open_gap_rows, open_gaps
from k2.kafka.topics import ensure_topics
from k2.lake.tables import CONNECTION_EVENTS, TRADE_GAPS, gold_table
from k2.medallion.interval import Interval
from k2.medallion.job import run
from k2.monitoring.monitor import run_monitor
from k2.monitoring.thresholds import configured_thresholds
from tests.integration.medallion_fixtures import binance, own_lake

pytestmark = pytest.mark.integration

UTC = dt.UTC
HOUR = dt.timedelta(hours=1)
T = dt.datetime.now(UTC).replace(minute=0, second=0, microsecond=0) - 2 * HOUR  # two whole hours in the past


def s(seconds: float) -> dt.datetime:
    return T + dt.timedelta(seconds=seconds)


def trade(t: int, seconds: float, symbol: str = "BTCUSDT") -> tuple[bytes, bytes]:
    when = s(seconds).strftime("%Y-%m-%dT%H:%M:%S.%f")
    return binance(t, "100.00", "0.50000", when, symbol=symbol), symbol.encode()


# BTCUSDT 103-105 are missing while the feed was disconnected (T+12 s .. T+14 s); ETHUSDT 51 is
# missing with no disconnect near it. All in the first minutes of hour T.
FIRST = [trade(100, 5), trade(101, 8), trade(102, 10), trade(106, 16), trade(107, 20)]
FIRST += [trade(50, 200, "ETHUSDT"), trade(52, 210, "ETHUSDT")]
MISSING = [trade(103, 11), trade(104, 12.5), trade(105, 15), trade(51, 205, "ETHUSDT")]


def publish(settings, trades: list[tuple[bytes, bytes]], events: list[ConnectionEvent] = ()) -> None:
    producer = TradeProducer(settings, get_exchange("binance"))
    for value, key in trades:
        producer.publish(value, key)
    for event in events:
        producer.publish_event(event)
    stats = producer.close(30)
    assert stats.failed == 0 and stats.delivered == len(trades) + len(events)


def take_into_bronze(spark, settings, since: dict[int, int], ingested_at: dt.datetime) -> dict[int, int]:
    """What the Bronze stream does, by hand: every record after ``since`` into Bronze with its
    coordinates, key and headers, ingested at ``ingested_at``; returns the new end offsets."""
    from confluent_kafka import Consumer, TopicPartition
    from pyspark.sql import Row

    from k2.lake.tables import bronze_table

    topic = settings.topic_for("binance")
    consumer = Consumer({"bootstrap.servers": settings.kafka.bootstrap_servers, "group.id": f"gaps-{uuid.uuid4()}"})
    try:
        parts = consumer.list_topics(topic, timeout=10).topics[topic].partitions
        ends = {p: consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=10)[1] for p in parts}
        pending = {p for p in parts if ends[p] > since.get(p, 0)}
        consumer.assign([TopicPartition(topic, p, since.get(p, 0)) for p in pending])
        rows, deadline = [], dt.datetime.now(UTC) + dt.timedelta(seconds=30)
        while pending and dt.datetime.now(UTC) < deadline:
            msg = consumer.poll(0.5)
            if msg is None or msg.error():
                continue
            rows.append(
                Row(
                    kafka_topic=topic,
                    kafka_partition=msg.partition(),
                    kafka_offset=msg.offset(),
                    kafka_timestamp=dt.datetime.fromtimestamp(msg.timestamp()[1] / 1000, UTC),
                    kafka_timestamp_type=0,
                    key=msg.key(),
                    value=msg.value(),
                    headers=[Row(key=k, value=v) for k, v in msg.headers()],
                    ingested_at=ingested_at,
                )
            )
            if msg.offset() + 1 >= ends[msg.partition()]:
                pending.discard(msg.partition())
    finally:
        consumer.close()
    assert not pending, f"partitions {pending} of {topic} not read to their end"
    table = f"{settings.lake.catalog_name}.{bronze_table('binance').identifier}"
    spark.createDataFrame(rows, schema=spark.table(table).schema).writeTo(table).append()
    return ends


def batch(spark, settings, hour: int) -> None:
    interval = Interval("binance", T + hour * HOUR, T + (hour + 1) * HOUR)
    reports = [
        run(spark, settings, layer, interval, lambda layer, frame, interval: {"gate": "off in this test"})
        for layer in ("silver", "gold")
    ]
    assert reports[0].dead_letters == 0


def rows(spark, settings, identifier: str) -> list:
    return spark.table(f"{settings.lake.catalog_name}.{identifier}").collect()


def bars(spark, settings, width: str) -> dict[tuple[str, dt.datetime], tuple]:
    return {
        (r.symbol, r.bar_start.astimezone(UTC)): (r.first_trade_id, r.last_trade_id, r.trade_count, r.complete)
        for r in rows(spark, settings, gold_table(width).identifier)
    }


def missing_trades_incident(result) -> list[tuple[str, str]]:
    return [(e.kind, e.severity) for e in result.events if e.incident.metric == "missing_trades"]


def test_gaps_are_recorded_explained_flagged_counted_then_closed_by_late_trades(spark, kafka_broker, tmp_path) -> None:
    port = int(kafka_broker.settings.kafka.bootstrap_servers.rsplit(":", 1)[1])
    settings = own_lake(
        spark, tmp_path / "home", kafka_port=port, topic_template=f"g-{uuid.uuid4().hex[:8]}.{{exchange}}.raw"
    )
    ensure_topics(settings)
    outage = [
        ConnectionEvent(DISCONNECTED, s(12), 1, "idle_timeout", "no frame for 10s", "ws://x"),
        ConnectionEvent(CONNECTED, s(14), 2, url="ws://x"),
    ]
    publish(settings, FIRST, outage)
    offsets = take_into_bronze(spark, settings, {}, T + dt.timedelta(minutes=10))
    batch(spark, settings, 0)

    events = sorted(
        (r.event, r.event_time.astimezone(UTC)) for r in rows(spark, settings, CONNECTION_EVENTS.identifier)
    )
    assert events == [(CONNECTED, s(14)), (DISCONNECTED, s(12))]  # routed there: not trades, not dead letters
    gaps = {(r.symbol, r.first_missing_id): r for r in rows(spark, settings, TRADE_GAPS.identifier)}
    assert set(gaps) == {("BTC-USDT", 103), ("ETH-USDT", 51)}
    btc, eth = gaps[("BTC-USDT", 103)], gaps[("ETH-USDT", 51)]
    assert (btc.last_missing_id, btc.missing_count, btc.explained_by_disconnect, btc.closed_at) == (105, 3, True, None)
    assert (btc.after_time.astimezone(UTC), btc.before_time.astimezone(UTC)) == (s(10), s(16))
    assert (eth.last_missing_id, eth.missing_count, eth.explained_by_disconnect) == (51, 1, False)
    assert [(g.symbol, g.exchange_symbol, g.missing_count) for g in open_gaps(settings)] == [
        ("BTC-USDT", "BTCUSDT", 3),
        ("ETH-USDT", "ETHUSDT", 1),
    ]
    minute = bars(spark, settings, "1m")
    assert minute[("BTC-USDT", T)] == ("100", "107", 5, False)
    assert minute[("ETH-USDT", s(180))] == ("50", "52", 2, False)
    assert bars(spark, settings, "1h")[("BTC-USDT", T)] == ("100", "107", 5, False)

    thresholds = configured_thresholds(settings)
    now = dt.datetime.now(UTC).timestamp()
    first = run_monitor(settings, thresholds, now)
    measured = next(m for m in first.metrics if m.exchange == "binance")
    assert (measured.open_gaps, measured.missing_trades) == (2, 4)
    assert measured.silver_gap_rows == 0  # the events are Bronze rows Silver accounted for
    assert missing_trades_incident(first) == [("opened", "warning")]
    prom = (settings.monitoring_dir / "k2.prom").read_text()
    assert 'k2_stream_missing_trades{exchange="binance"} 4' in prom
    assert 'k2_open_incident{exchange="binance",metric="missing_trades"} 1' in prom

    # the missing trades arrive late (a repair publishes them like this), ingested in the next hour
    publish(settings, MISSING)
    take_into_bronze(spark, settings, offsets, T + HOUR + dt.timedelta(minutes=10))
    batch(spark, settings, 1)

    closed = {(r.symbol, r.first_missing_id): r.closed_at for r in rows(spark, settings, TRADE_GAPS.identifier)}
    assert set(closed) == {("BTC-USDT", 103), ("ETH-USDT", 51)} and None not in closed.values()
    assert open_gaps(settings) == [] and open_gap_rows(settings, "binance") == []
    minute = bars(spark, settings, "1m")
    assert minute[("BTC-USDT", T)] == ("100", "107", 8, True)
    assert minute[("ETH-USDT", s(180))] == ("50", "52", 3, True)
    assert bars(spark, settings, "5m")[("BTC-USDT", T)] == ("100", "107", 8, True)

    second = run_monitor(settings, thresholds, now + 1)
    assert next(m.missing_trades for m in second.metrics if m.exchange == "binance") == 0
    resolved = run_monitor(settings, thresholds, now + 1 + settings.alerts.resolve_after_s)
    assert missing_trades_incident(resolved) == [("resolved", "resolved")]
