"""Gap detection (k2.gaps.detect) and connection-event routing (k2.medallion.transforms.events) on
in-memory frames: which ids are missing, which outage explains them, which recorded gaps close."""

from __future__ import annotations

import datetime as dt

import pytest
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from k2.feeds.events import CONNECTION_KEY, ConnectionEvent, connection_event
from k2.gaps.detect import GAP_COLUMNS, explain, find_gaps, outages, reconcile
from k2.lake.tables import CONNECTION_EVENTS, TRADE_GAPS
from k2.medallion.transforms.events import event_fields, to_connection_events
from tests.spark.frames import INGESTED_AT, KAFKA_SCHEMA, TOPIC, at, utc

T0 = at("2026-11-20T10:00:00")
NOW = at("2026-11-20T11:00:00")
TRADES = "exchange string, symbol string, exchange_symbol string, trade_id string, event_time timestamp"
EVENTS = "exchange string, event string, event_time timestamp, kafka_partition int, kafka_offset bigint"


def s(seconds: float) -> dt.datetime:
    return T0 + dt.timedelta(seconds=seconds)


def trades(spark: SparkSession, ids: list[str], symbol: str = "BTC-USDT", exchange: str = "binance") -> DataFrame:
    """One trade a second, in id order."""
    raw = symbol.replace("-", "")
    rows = [(exchange, symbol, raw, i, s(n)) for n, i in enumerate(ids)]
    return spark.createDataFrame(rows, TRADES)


def gaps_of(frame: DataFrame) -> list[tuple]:
    return sorted(
        (
            r.exchange,
            r.symbol,
            r.first_missing_id,
            r.last_missing_id,
            r.missing_count,
            utc(r.after_time),
            utc(r.before_time),
        )
        for r in frame.collect()
    )


def test_every_run_of_missing_ids_is_one_gap_with_its_neighbours_times(spark: SparkSession) -> None:
    btc = trades(spark, ["5", "6", "9", "10", "14"])  # 7-8 and 11-13 missing
    eth = trades(spark, ["100", "101"], "ETH-USDT")  # none missing
    odd = trades(spark, ["a1", "a5", "99999999999999999999"], "SOL-USDT")  # no integers (the last too big)
    kraken = trades(spark, ["1", "3"], exchange="kraken")  # same symbol, other exchange
    found = find_gaps(btc.unionByName(eth).unionByName(odd).unionByName(kraken))
    assert gaps_of(found) == [
        ("binance", "BTC-USDT", 7, 8, 2, s(1), s(2)),
        ("binance", "BTC-USDT", 11, 13, 3, s(3), s(4)),
        ("kraken", "BTC-USDT", 2, 2, 1, s(0), s(1)),
    ]
    assert {r.exchange_symbol for r in found.collect()} == {"BTCUSDT"}


def test_ids_arriving_out_of_order_and_duplicated_leave_no_false_gap(spark: SparkSession) -> None:
    shuffled = trades(spark, ["3", "1", "2", "2", "4"])
    assert gaps_of(find_gaps(shuffled)) == []


def events(spark: SparkSession, rows: list[tuple[str, float]], exchange: str = "binance") -> DataFrame:
    return spark.createDataFrame([(exchange, e, s(t), 0, n) for n, (e, t) in enumerate(rows)], EVENTS)


def test_an_outage_runs_from_a_disconnect_to_the_next_connect(spark: SparkSession) -> None:
    down = events(spark, [("connected", 0), ("disconnected", 10), ("connected", 12), ("disconnected", 50)])
    got = sorted((utc(r.down_from), utc(r.down_until)) for r in outages(down).collect())
    assert got == [(s(10), s(12)), (s(50), s(50))]  # the last: no reconnect yet, the moment itself


@pytest.mark.parametrize(
    ("after", "before", "explained"),
    [
        (9, 13, True),  # the outage 10..12 lies inside the gap
        (11, 11.5, True),  # the gap lies inside the outage
        (13, 16, True),  # within the clock margin (5 s) after the reconnect
        (18, 30, False),  # well after it
        (45, 47, True),  # a disconnect without a reconnect, 3 s later: within the margin
        (100, 200, False),
    ],
)
def test_a_gap_is_explained_when_an_outage_overlaps_it(
    spark: SparkSession, after: float, before: float, explained: bool
) -> None:
    gap = spark.createDataFrame(
        [("binance", "BTC-USDT", "BTCUSDT", 7, 8, 2, s(after), s(before))],
        "exchange string, symbol string, exchange_symbol string, first_missing_id bigint, last_missing_id bigint, "
        "missing_count bigint, after_time timestamp, before_time timestamp",
    )
    down = outages(events(spark, [("disconnected", 10), ("connected", 12), ("disconnected", 50)]))
    other = outages(events(spark, [("disconnected", 0), ("connected", 300)], exchange="kraken"))
    assert [r.explained_by_disconnect for r in explain(gap, down.unionByName(other)).collect()] == [explained]


def recorded(spark: SparkSession, rows: list[tuple]) -> DataFrame:
    schema = ", ".join(
        f"{c} {t}"
        for c, t in zip(
            GAP_COLUMNS,
            ["string"] * 3 + ["bigint"] * 3 + ["timestamp"] * 2 + ["boolean"] + ["timestamp"] * 2,
            strict=True,
        )
    )
    return spark.createDataFrame(rows, schema)


def test_reconcile_opens_found_gaps_and_closes_filled_ones(spark: SparkSession) -> None:
    # recorded: 7-8 (now filled), 11-13 (now only 12-13 missing: closed, 12-13 opens), 20-21 (unchanged)
    before = recorded(
        spark,
        [
            ("binance", "BTC-USDT", "BTCUSDT", 7, 8, 2, s(1), s(2), False, T0, None),
            ("binance", "BTC-USDT", "BTCUSDT", 11, 13, 3, s(3), s(4), False, T0, None),
            ("binance", "BTC-USDT", "BTCUSDT", 20, 21, 2, s(5), s(6), True, T0, None),
        ],
    )
    found = explain(
        find_gaps(trades(spark, ["6", "7", "8", "9", "10", "11", "14", "15", "19", "22"])), outages(events(spark, []))
    )
    rows = {(r.first_missing_id, r.last_missing_id): r for r in reconcile(found, before, F.lit(NOW)).collect()}
    assert set(rows) == {(7, 8), (11, 13), (12, 13), (16, 18), (20, 21)}
    assert utc(rows[(7, 8)].closed_at) == NOW and utc(rows[(11, 13)].closed_at) == NOW
    assert all(rows[k].closed_at is None for k in ((12, 13), (16, 18), (20, 21)))
    assert utc(rows[(16, 18)].detected_at) == NOW and rows[(12, 13)].missing_count == 2


def test_a_gap_shrinking_from_its_end_keeps_its_key_and_is_updated_not_closed(spark: SparkSession) -> None:
    before = recorded(spark, [("binance", "BTC-USDT", "BTCUSDT", 11, 13, 3, s(3), s(4), False, T0, None)])
    found = explain(find_gaps(trades(spark, ["10", "13"])), outages(events(spark, [])))
    rows = reconcile(found, before, F.lit(NOW)).collect()
    assert [(r.first_missing_id, r.last_missing_id, r.closed_at) for r in rows] == [(11, 12, None)]


def test_the_gap_frames_have_the_tables_columns(spark: SparkSession) -> None:
    found = explain(find_gaps(trades(spark, ["1", "3"])), outages(events(spark, [])))
    rows = reconcile(found, recorded(spark, []), F.lit(NOW))
    assert rows.columns == [c.name for c in TRADE_GAPS.columns]


def kafka_rows(spark: SparkSession, records: list[tuple[bytes, bytes, list]]) -> DataFrame:
    from k2.medallion.transforms.bronze import kafka_to_bronze

    rows = [(key, value, TOPIC, 0, n, T0, 0, headers) for n, (key, value, headers) in enumerate(records)]
    return kafka_to_bronze(spark.createDataFrame(rows, KAFKA_SCHEMA), F.lit(INGESTED_AT))


EVENT_HEADERS = [("exchange", b"binance"), ("kind", b"connection")]


def event_corpus() -> list[tuple[bytes, bytes, list]]:
    """Connection events, good and bad, and trade-like records that carry no event header."""
    good = ConnectionEvent("disconnected", s(10), 3, "idle_timeout", "no frame for 30s", "ws://x").payload()
    up = ConnectionEvent("connected", s(12), 4).payload()
    return [
        (CONNECTION_KEY, good, EVENT_HEADERS),
        (CONNECTION_KEY, up, EVENT_HEADERS),
        (CONNECTION_KEY, good, [("exchange", b"binance")]),  # no kind header: not an event
        (b"BTCUSDT", good, [("kind", b"trade")]),  # another kind
        (CONNECTION_KEY, b'{"event":"paused","at_us":1}', EVENT_HEADERS),
        (CONNECTION_KEY, b'{"event":"connected","at_us":"1"}', EVENT_HEADERS),
        (CONNECTION_KEY, b'{"event":"connected","at_us":1.5}', EVENT_HEADERS),
        (CONNECTION_KEY, b'{"event":"connected","at_us":-1}', EVENT_HEADERS),
        (CONNECTION_KEY, b'{"event":"connected"}', EVENT_HEADERS),
        (CONNECTION_KEY, b"not json", EVENT_HEADERS),
        (CONNECTION_KEY, b"[1]", EVENT_HEADERS),
        (CONNECTION_KEY, b'{"event":"connected","at_us":5,"connection":"x","reason":7}', EVENT_HEADERS),
        (CONNECTION_KEY, b'{"event":"connected","at_us":5,"connection":1,"reason":null,"url":"u"}', EVENT_HEADERS),
        (CONNECTION_KEY, b'{"event":"connected","at_us":5,"connection":4294967296,"detail":true}', EVENT_HEADERS),
        (CONNECTION_KEY, b'{"event":"connected","at_us":99999999999999999999}', EVENT_HEADERS),
    ]


def test_spark_and_python_agree_on_which_records_are_connection_events(spark: SparkSession) -> None:
    corpus = event_corpus()
    bronze = event_fields(kafka_rows(spark, corpus))
    spark_events = {
        r.kafka_offset: (r.event, utc(r.event_time), r.connection, r.reason, r.detail, r.url)
        for r in to_connection_events(bronze.where("is_event"), "binance").collect()
    }
    python_events = {}
    for n, (_, value, headers) in enumerate(corpus):
        e = connection_event({"value": value, "headers": headers})
        if e is not None:
            python_events[n] = (e["event"], e["event_time"], e["connection"], e["reason"], e["detail"], e["url"])
    assert spark_events == python_events
    assert sorted(spark_events) == [0, 1, 11, 12, 13]
    assert spark_events[0] == ("disconnected", s(10), 3, "idle_timeout", "no frame for 30s", "ws://x")
    assert bronze.where(~F.col("is_event")).count() == len(corpus) - 5


def test_connection_event_rows_have_the_tables_columns(spark: SparkSession) -> None:
    rows = to_connection_events(event_fields(kafka_rows(spark, event_corpus()[:1])), "binance")
    assert rows.columns == [c.name for c in CONNECTION_EVENTS.columns]
