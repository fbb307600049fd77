"""Bronze -> Silver -> Gold for one exchange and one interval; idempotent, so any interval can be
re-run or backfilled and gives the same tables.

    spark-submit ... spark_jobs/medallion.py --layer silver --exchange binance \
        --start 2026-11-20T13:00:00Z --end 2026-11-20T14:00:00Z [--report out.json]

Silver takes the Bronze rows whose Kafka timestamp falls in the interval; every one of them ends in
exactly one of: a new Silver trade, a dead letter, or a counted duplicate (of a trade in this
interval or already in Silver). Gold recomputes exactly the bars that the interval's Silver trades
fall into (late trades re-open old bars), from all of Silver, and replaces only those bars. Each
layer's output passes its Great Expectations gate before anything is written.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from k2.batch.interval import Interval, validate_interval
from k2.exchanges import get_exchange, known_symbols
from k2.lake.tables import DEAD_LETTER, GOLD_INTERVALS, SILVER_TRADES, bronze_table, gold_table
from k2.log import configure_logging, get_logger
from k2.settings import Settings, load_settings

if TYPE_CHECKING:
    from pyspark.sql import DataFrame, SparkSession

log = get_logger("k2.medallion")

Gate = Callable[[str, "DataFrame", Interval], dict[str, Any]]


def _table(settings: Settings, identifier: str) -> str:
    return f"{settings.catalog_name}.{identifier}"


def _between(column: str, start: dt.datetime, end: dt.datetime):
    from pyspark.sql import functions as F

    return (F.col(column) >= F.lit(start)) & (F.col(column) < F.lit(end))


def merge_insert_new(spark: SparkSession, source: DataFrame, table: str, key: tuple[str, ...],
                     update_when_changed: tuple[str, ...] = ()) -> None:
    """MERGE ``source`` into ``table`` on ``key``: insert what is new; with ``update_when_changed``,
    also replace rows whose listed columns differ (and only those, so re-runs change nothing)."""
    view = f"k2_merge_source_{abs(hash((table, time.time_ns())))}"
    source.createOrReplaceTempView(view)
    on = " AND ".join(f"t.{c} = s.{c}" for c in key)
    update = ""
    if update_when_changed:
        changed = " OR ".join(f"NOT (t.{c} <=> s.{c})" for c in update_when_changed)
        update = f"WHEN MATCHED AND ({changed}) THEN UPDATE SET *"
    try:
        spark.sql(f"MERGE INTO {table} t USING {view} s ON {on} {update} WHEN NOT MATCHED THEN INSERT *")
    finally:
        spark.catalog.dropTempView(view)


# --- Silver --------------------------------------------------------------------------------------
def run_silver(spark: SparkSession, settings: Settings, interval: Interval, gate: Gate) -> dict[str, Any]:
    from pyspark import StorageLevel
    from pyspark.sql import functions as F

    from spark_jobs.transforms.silver import SilverRules, classify, first_per_key, to_dead_letters, to_trades

    exchange = get_exchange(interval.exchange)
    now = F.current_timestamp()
    bronze = spark.table(_table(settings, bronze_table(exchange.name).identifier)) \
        .where(_between("kafka_timestamp", interval.start, interval.end))
    rules = SilverRules(exchange.name, known_symbols(settings, exchange), settings.silver_max_event_lead_s,
                        settings.silver_max_event_age_s)
    classified = classify(exchange.parse_bronze(bronze), rules).persist(StorageLevel.MEMORY_AND_DISK)
    try:
        counts = {r["reason"]: r["n"] for r in classified.groupBy("reason").agg(F.count("*").alias("n")).collect()}
        items = sum(counts.values())
        valid = counts.pop(None, 0)
        bronze_rows = classified.select("kafka_partition", "kafka_offset").distinct().count() if items else 0

        silver_name = _table(settings, SILVER_TRADES.identifier)
        trades = first_per_key(to_trades(classified, exchange.name, now))
        span = trades.agg(F.min("event_time").alias("lo"), F.max("event_time").alias("hi")).first()
        fresh = trades
        if span["lo"] is not None:  # leave out trades Silver already holds (duplicates across intervals)
            existing = spark.table(silver_name).where(
                (F.col("exchange") == exchange.name) & (F.col("event_time") >= F.lit(span["lo"]))
                & (F.col("event_time") <= F.lit(span["hi"]))).select("exchange", "symbol", "trade_id")
            fresh = trades.join(existing, ["exchange", "symbol", "trade_id"], "left_anti")
        fresh = fresh.persist(StorageLevel.MEMORY_AND_DISK)
        new_trades = fresh.count()
        dead = to_dead_letters(classified, exchange.name, now)

        quality = gate("silver", fresh, interval)
        merge_insert_new(spark, fresh, silver_name, SILVER_TRADES.identifier_columns)
        merge_insert_new(spark, dead, _table(settings, DEAD_LETTER.identifier), DEAD_LETTER.identifier_columns)
        fresh.unpersist()
    finally:
        classified.unpersist()
    report = {
        "layer": "silver", "exchange": exchange.name, "start": interval.start.isoformat(),
        "end": interval.end.isoformat(), "bronze_rows": bronze_rows, "items": items, "silver_new": new_trades,
        "duplicates": valid - new_trades, "dead_letters": sum(counts.values()), "dead_letter_reasons": counts,
        "quality": quality,
    }
    if report["silver_new"] + report["duplicates"] + report["dead_letters"] != items:
        raise RuntimeError(f"Silver accounting does not add up for {interval.label}: {report}")
    return report


# --- Gold ----------------------------------------------------------------------------------------
def run_gold(spark: SparkSession, settings: Settings, interval: Interval, gate: Gate) -> dict[str, Any]:
    from pyspark.sql import functions as F

    from spark_jobs.transforms.gold import BAR_KEY, INTERVAL_SECONDS, MEASURES, bar_start, minute_bars, roll_up

    now = F.current_timestamp()
    silver = spark.table(_table(settings, SILVER_TRADES.identifier)).where(F.col("exchange") == interval.exchange)
    touched = (silver.where(_between("kafka_timestamp", interval.start, interval.end))
               .select("exchange", "symbol", bar_start(F.col("event_time"), "1m").alias("bar_start"))
               .distinct().collect())
    report: dict[str, Any] = {"layer": "gold", "exchange": interval.exchange, "start": interval.start.isoformat(),
                              "end": interval.end.isoformat(), "bars": {}, "quality": {}}
    if not touched:
        return report
    keys_1m = spark.createDataFrame(touched, schema="exchange string, symbol string, bar_start timestamp")
    lo, hi = min(r["bar_start"] for r in touched), max(r["bar_start"] for r in touched)
    window = (F.col("event_time") >= F.lit(lo)) & (F.col("event_time") < F.lit(hi + dt.timedelta(minutes=1)))
    trades = (silver.where(window).withColumn("_bar", bar_start(F.col("event_time"), "1m"))
              .join(F.broadcast(keys_1m.withColumnRenamed("bar_start", "_bar")), ["exchange", "symbol", "_bar"],
                    "left_semi").drop("_bar"))
    # bars are small: materialised once, they feed the roll-ups, the gates and the MERGE (which
    # cannot plan a source that still reads other Iceberg tables through a cached relation)
    bars = {"1m": minute_bars(trades, now).localCheckpoint()}
    gold_1m = spark.table(_table(settings, gold_table("1m").identifier))
    for name in GOLD_INTERVALS:
        if name == "1m":
            continue
        seconds = INTERVAL_SECONDS[name]
        first = dt.datetime.fromtimestamp(lo.timestamp() // seconds * seconds, dt.UTC)
        coarse = keys_1m.select("exchange", "symbol", bar_start(F.col("bar_start"), name).alias("_bar")).distinct()
        # the coarse bars' other minutes come from Gold 1m, the touched minutes from the fresh bars
        others = (gold_1m.where((F.col("exchange") == interval.exchange) & (F.col("bar_start") >= F.lit(first))
                                & (F.col("bar_start") < F.lit(hi + dt.timedelta(seconds=seconds))))
                  .join(bars["1m"].select(*BAR_KEY), list(BAR_KEY), "left_anti"))
        minutes = (others.unionByName(bars["1m"]).withColumn("_bar", bar_start(F.col("bar_start"), name))
                   .join(F.broadcast(coarse), ["exchange", "symbol", "_bar"], "left_semi").drop("_bar"))
        bars[name] = roll_up(minutes, name, now).localCheckpoint()
    for name, frame in bars.items():  # every gate passes before any bar is published
        report["quality"][name] = gate(f"gold_{name}", frame, interval)
    for name, frame in bars.items():
        report["bars"][name] = frame.count()
        merge_insert_new(spark, frame, _table(settings, gold_table(name).identifier), BAR_KEY, MEASURES)
        frame.unpersist()
    return report


# --- quality gate and entry point ---------------------------------------------------------------
def quality_gate(settings: Settings) -> Gate:
    def gate(layer: str, frame: DataFrame, interval: Interval) -> dict[str, Any]:
        from k2.quality import enforce, validate

        report = validate(layer, frame, settings=settings, run_name=interval.label.replace("/", "_"))
        enforce(report)
        return report.summary()

    return gate


def run(spark: SparkSession, settings: Settings, layer: str, interval: Interval, gate: Gate | None = None
        ) -> dict[str, Any]:
    gate = gate or quality_gate(settings)
    started = time.monotonic()
    log.info("medallion.started", layer=layer, interval=interval.label)
    report = (run_silver if layer == "silver" else run_gold)(spark, settings, interval, gate)
    report["duration_s"] = round(time.monotonic() - started, 2)
    log.info("medallion.finished", **{k: v for k, v in report.items() if k != "quality"})
    return report


def main(argv: list[str] | None = None) -> int:
    from k2.spark import build_spark_session

    parser = argparse.ArgumentParser(description="Bronze -> Silver or Silver -> Gold for one interval.")
    parser.add_argument("--layer", choices=("silver", "gold"), required=True)
    parser.add_argument("--exchange", required=True)
    parser.add_argument("--start", required=True, help="ISO 8601, inclusive")
    parser.add_argument("--end", required=True, help="ISO 8601, exclusive")
    parser.add_argument("--report", type=Path, help="write the run's report (JSON) here")
    args = parser.parse_args(argv)
    settings = load_settings()
    configure_logging(settings)
    interval = validate_interval(args.exchange, args.start, args.end, exchanges=settings.exchanges)
    spark = build_spark_session(settings, f"k2-{args.layer}-{args.exchange}")
    try:
        report = run(spark, settings, args.layer, interval)
    finally:
        spark.stop()
    if args.report:
        args.report.parent.mkdir(parents=True, exist_ok=True)
        args.report.write_text(json.dumps(report, default=str, indent=2))
    print(json.dumps(report, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
