"""Small frames are validated in-process (k2.quality.local): the same findings as in Spark."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal
from pathlib import Path

import pytest

from k2.quality import validate
from k2.quality.gate import LIMIT_SCANS_ALL_PARTITIONS
from k2.settings import Settings

T0 = dt.datetime(2026, 11, 30, 10, tzinfo=dt.UTC)
SCHEMA = (
    "exchange string, symbol string, bar_start timestamp, bar_end timestamp, open decimal(38,18), "
    "high decimal(38,18), low decimal(38,18), close decimal(38,18), volume_base decimal(38,18), "
    "volume_quote decimal(38,18), vwap decimal(38,18), trade_count bigint, taker_buy_base decimal(38,18), "
    "taker_sell_base decimal(38,18), computed_at timestamp, first_trade_id string, last_trade_id string, "
    "complete boolean"
)


def bar(minute: int, **changes) -> tuple:
    values = {
        "exchange": "binance",
        "symbol": "BTC-USDT",
        "bar_start": T0 + dt.timedelta(minutes=minute),
        "bar_end": T0 + dt.timedelta(minutes=minute + 1),
        **{k: Decimal(v) for k, v in (("open", "10"), ("high", "12"), ("low", "9"), ("close", "11"))},
        "volume_base": Decimal(2),
        "volume_quote": Decimal(21),
        "vwap": Decimal("10.5"),
        "trade_count": 3,
        "taker_buy_base": Decimal(1),
        "taker_sell_base": Decimal(1),
        "computed_at": T0,
        "first_trade_id": "7",
        "last_trade_id": "9",
        "complete": True,
    }
    values.update(changes)
    return tuple(values.values())


BAD_BARS = [
    bar(0),
    bar(1, high=Decimal("9.5")),  # below open, close and VWAP
    bar(2, trade_count=0),
    bar(3, bar_end=T0 + dt.timedelta(minutes=3, seconds=59)),  # off the 1-minute grid (SQL expectation)
    bar(4, taker_buy_base=Decimal(5)),  # taker volumes do not add up (SQL expectation)
    bar(0),  # duplicate key
]


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return Settings.from_env({}, home=tmp_path)


def findings(
    spark, settings: Settings, rows: list[tuple], *, local: bool, partitions: int = 0
) -> tuple[bool, set[str]]:
    frame = spark.createDataFrame(rows, SCHEMA)
    frame = frame.repartition(partitions) if partitions else frame
    report = validate("gold_1m", frame, settings=settings, exchange="binance", run_name=f"t{local}", local=local)
    # the detail's count, not its sample: pandas shows timestamps as Timestamp(...), Spark as datetime(...)
    return report.passed, {f"{f.severity} {f.expectation} {f.detail.split(',')[0]}" for f in report.failures}


def test_local_validation_finds_what_spark_finds(spark, settings: Settings) -> None:
    local = findings(spark, settings, BAD_BARS, local=True)
    assert local == findings(spark, settings, BAD_BARS, local=False)
    passed, found = local
    assert not passed
    sql_checks = {f for f in found if "unexpected_rows_expectation" in f}
    assert sql_checks == {"critical unexpected_rows_expectation observed 1"}  # grid and taker volumes, 1 row each
    assert any("column_A=high, column_B=open" in f for f in found)
    assert any("trade_count" in f for f in found)


def test_a_clean_small_frame_passes_in_process(spark, settings: Settings) -> None:
    passed, found = findings(spark, settings, [bar(m) for m in range(5)], local=True)
    assert passed and found == set()


def test_spark_validation_finds_the_same_in_a_frame_of_many_partitions_and_restores_the_session(
    spark, settings: Settings
) -> None:
    # GX's unexpected-values LIMITs run over every partition at once during a Spark validation
    (key,) = LIMIT_SCANS_ALL_PARTITIONS
    before = spark.conf.get(key)
    rows = [bar(m) for m in range(100, 140)] + BAD_BARS
    spread = findings(spark, settings, rows, local=False, partitions=8)
    assert spread == findings(spark, settings, rows, local=True)
    assert not spread[0] and any("trade_count" in f for f in spread[1])
    assert spark.conf.get(key) == before


SILVER_SCHEMA = (
    "exchange string, symbol string, exchange_symbol string, trade_id string, event_time timestamp, "
    "price decimal(38,18), quantity decimal(38,18), quote_amount decimal(38,18), taker_side string, "
    "kafka_topic string, kafka_partition int, kafka_offset bigint, kafka_timestamp timestamp, "
    "bronze_ingested_at timestamp, processed_at timestamp"
)


def silver_trade(trade_id: int, side: str = "buy") -> tuple:
    price, quantity = Decimal("10.5"), Decimal(trade_id % 7 + 1)
    kafka = ("k2.trades.binance", 0, trade_id, T0)
    trade = ("binance", "BTC-USDT", "BTCUSDT", str(trade_id), T0, price, quantity, price * quantity, side)
    return (*trade, *kafka, T0, T0)


def spark_jobs_of_validation(spark, settings: Settings, rows: list[tuple], group: str):
    spark.sparkContext.setJobGroup(group, "a Silver validation")
    try:
        frame = spark.createDataFrame(rows, SILVER_SCHEMA)
        report = validate("silver", frame, settings=settings, exchange="binance", run_name=group, local=False)
    finally:
        spark.sparkContext.setJobGroup(None, None)
    return report, len(spark.sparkContext.statusTracker().getJobIdsForGroup(group))


def test_spark_validation_runs_no_job_for_the_samples_of_passing_expectations(spark, settings: Settings) -> None:
    """Stock GX runs one job per map expectation for its unexpected values (19 in Silver's suite)
    even when their count, computed beforehand, is 0 (k2.quality.spark_metrics)."""
    import json

    map_expectations = 19  # 13 not-null, 3 between, in-set, regex, compound-unique
    report, jobs = spark_jobs_of_validation(spark, settings, [silver_trade(i) for i in range(50)], "k2-clean")
    assert report.passed and not report.failures and report.evaluated == map_expectations + 2
    assert jobs < map_expectations / 2, jobs
    # the stored result keeps SUMMARY's shape: a passing map expectation has count 0 and no sample
    (stored,) = [p for p in (settings.home / "quality").rglob("*.json") if "k2-clean" in str(p)]
    results = json.loads(stored.read_text())["results"]
    in_set = next(r for r in results if r["expectation_config"]["type"] == "expect_column_values_to_be_in_set")
    assert in_set["result"]["unexpected_count"] == 0 and in_set["result"]["partial_unexpected_list"] == []

    rows = [silver_trade(i) for i in range(50)] + [silver_trade(50, side="hold"), silver_trade(49)]
    report, failing_jobs = spark_jobs_of_validation(spark, settings, rows, "k2-bad")
    details = {f.expectation: f.detail for f in report.critical}
    assert details == {
        "expect_column_values_to_be_in_set(column=taker_side)": "1 unexpected rows, e.g. ['hold']",
        "expect_compound_columns_to_be_unique(column_list=['exchange', 'symbol', 'trade_id'])": (
            "2 unexpected rows, e.g. [{'exchange': 'binance', 'symbol': 'BTC-USDT', 'trade_id': '49'}, "
            "{'exchange': 'binance', 'symbol': 'BTC-USDT', 'trade_id': '49'}]"
        ),
    }
    # sample jobs for the two failing expectations only (the compound one's window may take two)
    assert jobs < failing_jobs <= jobs + 4


def test_compound_unique_partitions_by_the_key_and_finds_what_gx_finds(spark, settings: Settings) -> None:
    """K2's compound-unique condition (k2.quality.spark_metrics) partitions by the key's columns; GX's
    by a struct of them. Duplicates with a null in the key are found alike, and a key of nulls only
    is left out alike (GX's ``all_values_are_missing``)."""
    from great_expectations.expectations.registry import _registered_metrics
    from pyspark.sql import Window
    from pyspark.sql import functions as F

    from k2.quality.spark_metrics import COMPOUND_UNIQUE_CONDITION, ENGINE

    def with_key(trade_id: int, symbol: str | None, trade: str | None) -> tuple:
        row = list(silver_trade(trade_id))
        row[1], row[3] = symbol, trade
        return tuple(row)

    keyed = [("BTC-USDT", "1"), ("BTC-USDT", "1"), (None, "2"), (None, "2"), (None, "3"), ("ETH-USDT", "1")]
    rows = [with_key(i, *key) for i, key in enumerate(keyed)] + [(None,) * 15, (None,) * 15]
    report, _ = spark_jobs_of_validation(spark, settings, rows, "k2-unique")
    # GX's own condition, on the rows its domain keeps
    frame = spark.createDataFrame(rows, SILVER_SCHEMA).where(
        "NOT (exchange IS NULL AND symbol IS NULL AND trade_id IS NULL)"
    )
    struct = F.struct("exchange", "symbol", "trade_id")
    expected = frame.withColumn("copies", F.count(F.lit(1)).over(Window.partitionBy(struct))).where("copies > 1")
    details = {f.expectation: f.detail for f in report.critical}
    detail = details["expect_compound_columns_to_be_unique(column_list=['exchange', 'symbol', 'trade_id'])"]
    assert expected.count() == 4 and detail.startswith("4 unexpected rows"), detail
    provider = _registered_metrics[COMPOUND_UNIQUE_CONDITION]["providers"][ENGINE][1]
    assert provider.__module__ == "k2.quality.spark_metrics"  # the one validated above is K2's


def test_spark_between_on_decimals_compares_exactly(spark, settings: Settings) -> None:
    """Silver's ``price > 0`` on a decimal column, its bound a decimal (k2.quality.spark_metrics):
    a zero price fails, the smallest price the column holds passes."""
    tiny = Decimal("0.000000000000000001")
    rows = [silver_trade(i) for i in range(10)]
    rows += [(*silver_trade(10)[:5], Decimal(0), *silver_trade(10)[6:])]
    rows += [(*silver_trade(11)[:5], tiny, Decimal(1), tiny, *silver_trade(11)[8:])]
    report, _ = spark_jobs_of_validation(spark, settings, rows, "k2-between")
    details = {f.expectation: f.detail for f in report.critical}
    assert details == {"expect_column_values_to_be_between(column=price)": "1 unexpected rows, e.g. [Decimal('0E-18')]"}
