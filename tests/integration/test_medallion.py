"""Bronze -> Silver -> Gold on real Spark and Iceberg, with hand-computed expected tables."""

from __future__ import annotations

import json
from decimal import Decimal as D

import pytest

from k2.lake.names import qualified
from k2.lake.tables import all_tables
from k2.medallion.interval import Interval
from k2.medallion.job import quality_gate, run
from k2.medallion.silver import SilverAccountingError, rehearse
from k2.quality import QualityGateFailed
from tests.integration.medallion_fixtures import at, binance, kraken, naive, own_lake, table_rows, write_bronze

# on K2's Spark Connect server only, where the Airflow tasks run them: test_on_spark_connect.py starts
# that run (the classic spark-submit path runs end to end in test_wheel_install.py)
pytestmark = [pytest.mark.integration, pytest.mark.on_connect]

H10 = Interval("binance", at("2026-11-20T10:00:00"), at("2026-11-20T11:00:00"))
H11 = Interval("binance", at("2026-11-20T11:00:00"), at("2026-11-20T12:00:00"))
KRAKEN_H10 = Interval("kraken", H10.start, H10.end)
TS = "2026-11-20T10:00:40"  # Kafka timestamp of the first hour's records


def no_gate(layer, frame, interval):
    return {"gate": "off in this test"}


def both_layers(spark, settings, interval, gate=no_gate):
    return run(spark, settings, "silver", interval, gate), run(spark, settings, "gold", interval, gate)


@pytest.fixture
def lake(spark, tmp_path):
    settings = own_lake(spark, tmp_path / "home")
    write_bronze(
        spark,
        settings,
        "binance",
        [
            (0, 0, TS, binance(1, "100.00", "1.00000", "2026-11-20T10:00:05")),
            (0, 1, TS, binance(2, "102.50", "0.50000", "2026-11-20T10:00:30", buyer_maker=True)),
            (1, 0, TS, binance(3, "99.00", "2.00000", "2026-11-20T10:00:30")),  # same time as 2: id breaks the tie
            (1, 1, TS, binance(10, "101.00", "1.00000", "2026-11-20T10:01:10")),
            (1, 2, TS, binance(1, "100.00", "1.00000", "2026-11-20T10:00:05")),  # exact duplicate of offset 0/0
            (0, 2, TS, binance(11, "100.00", "1.00000", "2026-11-20T10:00:05")[:40]),  # truncated
            (0, 3, TS, b"\xff\xfe" + binance(12, "1", "1", "2026-11-20T10:00:05")[2:]),
            (0, 4, TS, b""),
            (0, 5, TS, binance(13, "abc", "1.0", "2026-11-20T10:00:05")),
            (0, 6, TS, binance(14, "-1", "1.0", "2026-11-20T10:00:05")),
            (0, 7, TS, binance(15, "100.00", "1.0", "2066-11-20T10:00:05")),
            (0, 8, TS, binance(16, "100.00", "1.0", "1986-11-20T10:00:05")),
            (0, 9, TS, binance(17, "0.1", "1.0", "2026-11-20T10:00:05", symbol="DOGEUSDT")),
            (0, 10, TS, b'{"result":null,"id":1}'),
            (0, 11, TS, binance(18, "NaN", "1.0", "2026-11-20T10:00:05")),
            (0, 12, "2026-11-20T09:59:59", binance(19, "1.00", "1.0", "2026-11-20T09:59:58")),  # earlier interval
        ],
    )
    write_bronze(
        spark,
        settings,
        "kraken",
        [
            (
                0,
                0,
                TS,
                kraken(
                    (5, "65000.1", "0.01", "buy", "2026-11-20T10:02:00.000001Z", "BTC/USD"),
                    (6, "65000.2", "0.02000000", "sell", "2026-11-20T10:02:00.5Z", "BTC/USD"),
                    (9, "0.04921234", "12.34567891", "buy", "2026-11-20T10:02:00.6Z", "ETH/BTC"),
                ),
            ),
            (
                0,
                1,
                TS,
                kraken(
                    (7, '"abc"', "1", "buy", "2026-11-20T10:02:01Z", "BTC/USD"),
                    (8, "64999.9", "0.5", "sell", "2026-11-20T10:02:02Z", "BTC/USD"),
                ),
            ),
            (0, 2, TS, b'{"channel":"heartbeat"}'),
        ],
    )
    return settings


def test_silver_accounts_for_every_bronze_record(spark, lake) -> None:
    silver, _ = both_layers(spark, lake, H10)
    assert silver.bronze_rows == 15 and silver.items == 15
    assert silver.silver_new == 4 and silver.duplicates == 1
    assert silver.dead_letter_reasons == {
        "malformed_json": 1,
        "not_utf8": 1,
        "empty_payload": 1,
        "invalid_price": 2,
        "non_positive_price": 1,
        "future_timestamp": 1,
        "stale_timestamp": 1,
        "unknown_symbol": 1,
        "not_a_trade": 1,
    }
    trades = {r.trade_id: r for r in spark.table(f"{lake.lake.catalog_name}.silver.trades").collect()}
    assert sorted(trades) == ["1", "10", "2", "3"]
    one = trades["1"]
    assert (one.symbol, one.exchange_symbol, one.price, one.quantity, one.quote_amount, one.taker_side) == (
        "BTC-USDT",
        "BTCUSDT",
        D("100"),
        D("1"),
        D("100"),
        "buy",
    )
    assert one.event_time == naive("2026-11-20T10:00:05") and (one.kafka_partition, one.kafka_offset) == (0, 0)
    assert trades["2"].taker_side == "sell" and trades["2"].quote_amount == D("51.25")
    dead = spark.table(f"{lake.lake.catalog_name}.silver.dead_letter").collect()
    assert {(d.kafka_partition, d.kafka_offset) for d in dead} == {(0, o) for o in range(2, 12)}
    assert all(
        d.item_index == (-1 if d.reason in ("malformed_json", "not_utf8", "empty_payload", "not_a_trade") else 0)
        and d.detail
        for d in dead
    )


def test_copies_rank_valid_first_then_in_kafka_order(spark) -> None:
    from k2.medallion.transforms.silver import rank_copies

    candidates = spark.createDataFrame(
        [
            ("BTC-USDT", "1", None, 1, 5, 0),
            ("BTC-USDT", "1", None, 0, 9, 0),
            ("BTC-USDT", "1", "invalid_price", 0, 1, 0),
            ("BTC-USDT", "2", "invalid_price", 0, 2, 0),
            ("BTC-USDT", "2", None, 0, 3, 0),
            ("ETH-USDT", "1", None, 0, 4, 0),
        ],
        "symbol string, trade_id string, reason string, kafka_partition int, kafka_offset long, item_index int",
    )
    copies = {
        (r.symbol, r.trade_id, r.kafka_partition, r.kafka_offset): r.copy for r in rank_copies(candidates).collect()
    }
    assert copies == {
        ("BTC-USDT", "1", 0, 9): 1,
        ("BTC-USDT", "1", 1, 5): 2,
        ("BTC-USDT", "1", 0, 1): 3,
        ("BTC-USDT", "2", 0, 3): 1,
        ("BTC-USDT", "2", 0, 2): 2,
        ("ETH-USDT", "1", 0, 4): 1,
    }


def test_kraken_batches_split_into_trades_and_item_dead_letters(spark, lake) -> None:
    silver, _ = both_layers(spark, lake, KRAKEN_H10)
    assert (silver.bronze_rows, silver.items, silver.silver_new) == (3, 6, 4)
    assert silver.dead_letter_reasons == {"invalid_price": 1, "not_a_trade": 1}
    trades = {r.trade_id: r for r in spark.table(f"{lake.lake.catalog_name}.silver.trades").collect()}
    assert trades["5"].price == D("65000.1") and trades["5"].quantity == D("0.01")
    assert trades["5"].event_time == naive("2026-11-20T10:02:00.000001") and trades["5"].symbol == "BTC-USD"
    assert trades["6"].quote_amount == D("1300.004") and trades["8"].taker_side == "sell"
    assert trades["9"].quote_amount == D("0.04921234") * D("12.34567891")  # exact: 16 decimals
    dead = {
        (d.kafka_offset, d.item_index): d.reason
        for d in spark.table(f"{lake.lake.catalog_name}.silver.dead_letter").collect()
    }
    assert dead == {(1, 0): "invalid_price", (2, -1): "not_a_trade"}


def bar(rows, start):
    return next(r for r in rows if r.bar_start == naive(start))


def test_gold_bars_match_hand_computed_values(spark, lake) -> None:
    _, gold = both_layers(spark, lake, H10)
    assert gold.bars == {"1m": 2, "5m": 1, "1h": 1, "1d": 1}
    minute = spark.table(f"{lake.lake.catalog_name}.gold.ohlcv_1m").collect()
    first = bar(minute, "2026-11-20T10:00:00")
    assert (first.open, first.high, first.low, first.close) == (D(100), D("102.5"), D(99), D(99))
    assert (first.volume_base, first.volume_quote, first.trade_count) == (D("3.5"), D("349.25"), 3)
    assert first.vwap == D("99.785714285714") and first.bar_end == naive("2026-11-20T10:01:00")
    assert (first.taker_buy_base, first.taker_sell_base) == (D(3), D("0.5"))
    assert bar(minute, "2026-11-20T10:01:00").vwap == D(101)
    for table, start, end in (
        ("ohlcv_5m", "2026-11-20T10:00:00", "2026-11-20T10:05:00"),
        ("ohlcv_1h", "2026-11-20T10:00:00", "2026-11-20T11:00:00"),
        ("ohlcv_1d", "2026-11-20T00:00:00", "2026-11-21T00:00:00"),
    ):
        (row,) = spark.table(f"{lake.lake.catalog_name}.gold.{table}").collect()
        assert (row.bar_start, row.bar_end) == (naive(start), naive(end))
        assert (row.open, row.high, row.low, row.close, row.trade_count) == (D(100), D("102.5"), D(99), D(101), 4)
        assert (row.volume_base, row.volume_quote, row.vwap) == (D("4.5"), D("450.25"), D("100.055555555556"))


def test_late_trade_reaggregates_its_bars_without_touching_neighbours(spark, lake) -> None:
    both_layers(spark, lake, H10)
    before = {r.bar_start: r for r in spark.table(f"{lake.lake.catalog_name}.gold.ohlcv_1m").collect()}
    write_bronze(
        spark,
        lake,
        "binance",
        [
            (0, 20, "2026-11-20T11:05:00", binance(4, "98.00", "1.0", "2026-11-20T10:00:50")),  # late
            (0, 21, "2026-11-20T11:05:00", binance(30, "50.00", "1.0", "2026-11-20T11:04:59")),
        ],
    )
    both_layers(spark, lake, H11)
    after = {r.bar_start: r for r in spark.table(f"{lake.lake.catalog_name}.gold.ohlcv_1m").collect()}
    late = after[naive("2026-11-20T10:00:00")]
    assert (late.close, late.low, late.trade_count, late.volume_base) == (D(98), D(98), 4, D("4.5"))
    assert after[naive("2026-11-20T10:01:00")] == before[naive("2026-11-20T10:01:00")]  # neighbour untouched
    assert len(after) == 3
    hours = spark.table(f"{lake.lake.catalog_name}.gold.ohlcv_1h").collect()
    (hour10,) = [r for r in hours if r.bar_start == naive("2026-11-20T10:00:00")]
    assert (hour10.trade_count, hour10.low, hour10.close) == (5, D(98), D(101))
    (day,) = spark.table(f"{lake.lake.catalog_name}.gold.ohlcv_1d").collect()
    assert (day.trade_count, day.low, day.close) == (6, D(50), D(50))


def test_three_reruns_give_identical_tables(spark, lake) -> None:
    tables = ("silver.trades", "silver.dead_letter", *(f"gold.ohlcv_{i}" for i in ("1m", "5m", "1h", "1d")))
    both_layers(spark, lake, H10)
    first = {t: table_rows(spark, lake, t) for t in tables}
    for _ in range(2):
        silver, _ = both_layers(spark, lake, H10)
        assert silver.silver_new == 0 and silver.duplicates == 5
        assert {t: table_rows(spark, lake, t) for t in tables} == first


def test_great_expectations_gates_pass_clean_layers_and_keep_their_results(spark, lake) -> None:
    gate = quality_gate(lake)
    silver, gold = both_layers(spark, lake, H10, gate)
    assert silver.quality["silver"]["passed"] and not silver.quality["silver"]["critical"]
    assert silver.quality["silver"]["evaluated"] >= 20
    # 3 of the 15 Bronze rows carry the empty/truncated payloads the suite only warns about: none here
    assert silver.quality["bronze"]["passed"]
    assert set(gold.quality) == {"1m", "5m", "1h", "1d"} and all(q["passed"] for q in gold.quality.values())
    docs = silver.quality["silver"]["docs"]
    assert docs.startswith("file://") and (lake.home / "quality").as_uri() in docs
    results = list((lake.home / "quality" / "gx" / "uncommitted" / "validations").rglob("*.json"))
    assert {
        ".".join(p.relative_to(lake.home / "quality" / "gx" / "uncommitted" / "validations").parts[:2]) for p in results
    } >= {"bronze.binance", "silver.binance", "gold_1m.binance", "gold_1d.binance"}
    empty, _ = both_layers(spark, lake, Interval("binance", at("2026-11-20T20:00:00"), at("2026-11-20T21:00:00")), gate)
    warnings = {w["expectation"] for w in empty.quality["silver"]["warnings"]}
    assert empty.quality["silver"]["passed"] and warnings == {"expect_table_row_count_to_be_between"}


def test_critical_quality_failure_blocks_gold(spark, lake) -> None:
    run(spark, lake, "silver", H10, quality_gate(lake))
    gold_tables = [f"{lake.lake.catalog_name}.gold.ohlcv_{i}" for i in ("1m", "5m", "1h", "1d")]
    snapshots = {t: spark.sql(f"SELECT count(*) FROM {t}.snapshots").first()[0] for t in gold_tables}
    # a bad row that got into Silver behind the gate's back (a hand edit, a buggy writer)
    spark.sql(f"""INSERT INTO {lake.lake.catalog_name}.silver.trades
                  SELECT exchange, symbol, exchange_symbol, '999', event_time, price, -10 * quantity,
                         -10 * quote_amount, taker_side, kafka_topic, kafka_partition, 999, kafka_timestamp,
                         bronze_ingested_at, processed_at
                  FROM {lake.lake.catalog_name}.silver.trades WHERE trade_id = '1'""")
    with pytest.raises(QualityGateFailed) as failed:
        run(spark, lake, "gold", H10, quality_gate(lake))
    message = str(failed.value)
    assert "gold_1m.binance" in message and "volume_base" in message and "nothing was published" in message
    assert {t: spark.sql(f"SELECT count(*) FROM {t}.snapshots").first()[0] for t in gold_tables} == snapshots
    assert spark.table(gold_tables[0]).count() == 0


def test_the_silver_rehearsal_runs_every_step_and_writes_nothing(spark, lake) -> None:
    # the Spark Connect warm-up rehearses Silver on live rows (k2.runtime.spark_connect.warm_up)
    def snapshots() -> dict[str, int]:
        tables = [qualified(lake.lake.catalog_name, t.identifier) for t in all_tables(lake)]
        return {t: spark.sql(f"SELECT count(*) FROM {t}.snapshots").first()[0] for t in tables}

    before = snapshots()
    for interval in (H10, KRAKEN_H10):
        rehearse(spark, lake, interval)
    assert snapshots() == before
    assert table_rows(spark, lake, "silver.trades") == []


def test_empty_interval_is_known_from_metadata_alone(lake) -> None:
    from k2.medallion.settle import bronze_rows_at_most

    assert bronze_rows_at_most(lake, "binance", at("2026-11-20T10:00:00"), at("2026-11-20T11:00:00")) >= 15
    assert bronze_rows_at_most(lake, "kraken", at("2026-11-20T10:00:00"), at("2026-11-20T11:00:00")) >= 3
    assert bronze_rows_at_most(lake, "binance", at("2026-11-20T11:00:00"), at("2026-11-20T12:00:00")) == 0
    assert bronze_rows_at_most(lake, "kraken", at("2026-11-19T10:00:00"), at("2026-11-19T11:00:00")) == 0


H13 = Interval("binance", at("2026-11-20T13:00:00"), at("2026-11-20T14:00:00"))


def poisoned(payload: bytes, **fields) -> bytes:
    """A Binance payload with some of its trade's fields replaced (values as Python JSON values)."""
    message = json.loads(payload)
    message["data"].update(fields)
    return json.dumps(message, separators=(",", ":")).encode()


def test_poison_records_are_dead_letters_and_neither_layer_fails(spark, lake) -> None:
    """Measured before: "T":9999999999999999 among valid trades failed Silver with 'long overflow'
    (Spark 4 ANSI mode), and so would a price x quantity past DECIMAL(38,18). Now each is a dead
    letter, the valid trades of the interval reach Silver and Gold, and the real quality gates pass."""
    ts = "2026-11-20T13:00:40"
    write_bronze(
        spark,
        lake,
        "binance",
        [
            (0, 30, ts, binance(40, "100.00", "1.00000", "2026-11-20T13:00:05")),
            (0, 31, ts, poisoned(binance(41, "100.00", "1.0", "2026-11-20T13:00:06"), T=9999999999999999)),
            (0, 32, ts, poisoned(binance(42, "100.00", "1.0", "2026-11-20T13:00:06"), t="abc")),
            (0, 33, ts, binance(43, "999999999999", "999999999999", "2026-11-20T13:00:07")),
            (0, 34, ts, binance(44, "102.00", "2.00000", "2026-11-20T13:00:08", buyer_maker=True)),
        ],
    )
    silver, gold = both_layers(spark, lake, H13, quality_gate(lake))
    assert (silver.items, silver.silver_new, silver.duplicates) == (5, 2, 0)
    assert silver.dead_letter_reasons == {
        "timestamp_out_of_range": 1,
        "invalid_trade_id": 1,
        "quote_amount_overflow": 1,
    }
    trades = spark.table(f"{lake.lake.catalog_name}.silver.trades").where("kafka_offset >= 30").collect()
    assert sorted(t.trade_id for t in trades) == ["40", "44"]
    dead = {d.kafka_offset: d for d in spark.table(f"{lake.lake.catalog_name}.silver.dead_letter").collect()}
    assert (dead[31].reason, dead[31].item_index) == ("timestamp_out_of_range", 0)
    assert "field T (trade time, epoch ms)" in dead[31].detail and "9999999999999999" in dead[31].detail
    assert dead[32].reason == "invalid_trade_id" and 'got "abc"' in dead[32].detail
    assert dead[33].reason == "quote_amount_overflow" and "999999999999 x 999999999999" in dead[33].detail
    assert bytes(dead[31].raw_value) == poisoned(
        binance(41, "100.00", "1.0", "2026-11-20T13:00:06"), T=9999999999999999
    )
    assert gold.bars == {"1m": 1, "5m": 1, "1h": 1, "1d": 1} and all(q["passed"] for q in gold.quality.values())
    (minute,) = [
        r
        for r in spark.table(f"{lake.lake.catalog_name}.gold.ohlcv_1m").collect()
        if r.bar_start == naive("2026-11-20T13:00:00")
    ]
    assert (minute.trade_count, minute.volume_base, minute.volume_quote) == (2, D(3), D(304))


def test_a_row_lost_before_the_write_fails_the_accounting(spark, lake, monkeypatch) -> None:
    """A faulty anti-join (here: one that also drops trade 3) must not pass for a duplicate."""
    from pyspark.sql import functions as F

    import k2.medallion.silver as silver_step

    real = silver_step.new_trades

    def lossy(*args, **kwargs):
        return real(*args, **kwargs).where(F.col("trade_id") != "3")

    monkeypatch.setattr(silver_step, "new_trades", lossy)
    with pytest.raises(SilverAccountingError, match="Silver accounting does not add up") as failed:
        run(spark, lake, "silver", H10, no_gate)
    assert "3 trades written + 1 duplicates (1 within the interval, 0 already in Silver)" in str(failed.value)
    assert "!= 15 items" in str(failed.value)


def test_a_write_answered_without_its_observed_metrics_counts_its_rows_again(spark, lake, monkeypatch) -> None:
    """A Spark Connect 4.1 server answers a command without its observed metrics when they take over
    100 ms (SPARK-54279; it happened under `k2 up`'s load): Silver then counts what it wrote itself,
    and the accounting still adds up."""
    from pyspark.sql.connect.observation import Observation as ConnectObservation
    from pyspark.sql.observation import Observation

    for kind in (Observation, ConnectObservation):
        monkeypatch.setattr(kind, "get", property(lambda self: {}))
    silver = run(spark, lake, "silver", H10, no_gate)
    assert (silver.silver_new, silver.dead_letters_new, silver.dead_letters_known) == (4, 10, 0)
