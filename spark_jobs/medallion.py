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


def _floor(moment: dt.datetime, width: dt.timedelta) -> dt.datetime:
    seconds = width.total_seconds()
    return dt.datetime.fromtimestamp(moment.replace(tzinfo=dt.UTC).timestamp() // seconds * seconds, dt.UTC)


def _between(column: str, start: dt.datetime, end: dt.datetime):
    from pyspark.sql import functions as F

    return (F.col(column) >= F.lit(start)) & (F.col(column) < F.lit(end))


def merge_bars(spark: SparkSession, bars: DataFrame, table: str, exchange: str, span: tuple[dt.datetime, dt.datetime],
               key: tuple[str, ...], measures: tuple[str, ...]) -> None:
    """MERGE recomputed bars into a Gold table: insert new bars, replace those whose measures
    changed, leave equal ones alone (so a re-run commits nothing new). The target is pruned to the
    exchange and the bars' time span."""
    view = f"k2_bars_{abs(hash((table, time.time_ns())))}"
    bars.createOrReplaceTempView(view)
    on = " AND ".join(f"t.{c} = s.{c}" for c in key)
    changed = " OR ".join(f"NOT (t.{c} <=> s.{c})" for c in measures)
    pruned = (f"t.exchange = '{exchange}' AND t.bar_start >= TIMESTAMP '{span[0].isoformat()}' "
              f"AND t.bar_start < TIMESTAMP '{span[1].isoformat()}'")
    try:
        spark.sql(f"""MERGE INTO {table} t USING {view} s ON {on} AND {pruned}
                      WHEN MATCHED AND ({changed}) THEN UPDATE SET *
                      WHEN NOT MATCHED THEN INSERT *""")
    finally:
        spark.catalog.dropTempView(view)


def _append(frame: DataFrame, table: str) -> None:
    """Each task writes its own rows to the partitions it holds. Iceberg's default for partitioned
    tables (hash distribution) would first shuffle every row of one day to a single task: one core
    writing while the others wait. Maintenance compacts the extra files."""
    frame.writeTo(table).option("distribution-mode", "none").option("fanout-enabled", "true").append()


# --- Silver --------------------------------------------------------------------------------------
def run_silver(spark: SparkSession, settings: Settings, interval: Interval, gate: Gate) -> dict[str, Any]:
    """Appends what is new. Only one Silver task per exchange runs at a time (the DAG says so),
    so the anti-joins against the tables are the whole idempotency story."""
    from pyspark import StorageLevel
    from pyspark.sql import Observation
    from pyspark.sql import functions as F

    from spark_jobs.transforms.silver import (
        SilverRules,
        classify,
        outcome_columns,
        rank_copies,
        to_dead_letters,
        to_trades,
    )

    exchange = get_exchange(interval.exchange)
    now = F.current_timestamp()
    in_interval = _between("kafka_timestamp", interval.start, interval.end)
    bronze = spark.table(_table(settings, bronze_table(exchange.name).identifier)).where(in_interval)
    rules = SilverRules(exchange.name, known_symbols(settings, exchange), settings.silver_max_event_lead_s,
                        settings.silver_max_event_age_s)
    bronze_quality = gate("bronze", bronze, interval)
    # Parsed, ranked (the de-duplication's shuffle) and cached once: it feeds the accounting,
    # Silver and the dead letters. Filtering before the cache would be slower: Spark pushes a filter
    # on ``reason`` below the JSON parse, inlining the parse into every condition on a parsed field.
    classified = rank_copies(outcome_columns(classify(exchange.parse_bronze(bronze), rules))) \
        .persist(StorageLevel.MEMORY_AND_DISK)
    try:
        # one pass for the accounting: items per outcome, Bronze rows (each has one item at index
        # 0 or -1), and the event-time span of the valid trades (to prune Silver's partitions)
        stats = classified.groupBy("reason").agg(
            F.count(F.lit(1)).alias("n"), F.sum((F.col("item_index") <= 0).cast("int")).alias("rows"),
            F.min("event_time").alias("lo"), F.max("event_time").alias("hi")).collect()
        counts = {r["reason"]: r["n"] for r in stats}
        items, bronze_rows = sum(counts.values()), sum(r["rows"] for r in stats)
        valid = counts.pop(None, 0)
        span = next(((r["lo"], r["hi"]) for r in stats if r["reason"] is None), None)

        silver_name = _table(settings, SILVER_TRADES.identifier)
        fresh = to_trades(classified.where(F.col("copy") == 1), exchange.name, now)
        if span is not None:  # leave out trades Silver already holds (duplicates across intervals)
            existing = spark.table(silver_name).where(
                (F.col("exchange") == exchange.name) & (F.col("event_time") >= F.lit(span[0]))
                & (F.col("event_time") <= F.lit(span[1]))).select("exchange", "symbol", "trade_id")
            fresh = fresh.join(existing, ["exchange", "symbol", "trade_id"], "left_anti")
        dead_name = _table(settings, DEAD_LETTER.identifier)
        seen = spark.table(dead_name).where((F.col("exchange") == exchange.name) & in_interval) \
            .select(*DEAD_LETTER.identifier_columns)
        dead = to_dead_letters(classified, exchange.name, now).join(seen, list(DEAD_LETTER.identifier_columns),
                                                                     "left_anti")

        quality = gate("silver", fresh, interval)
        written = Observation(f"silver_new_{interval.label}")
        _append(fresh.observe(written, F.count(F.lit(1)).alias("rows")), silver_name)
        new_trades = written.get["rows"]
        _append(dead, dead_name)
        fresh.unpersist()  # cached by the quality gate
    finally:
        classified.unpersist()
    report = {
        "layer": "silver", "exchange": exchange.name, "start": interval.start.isoformat(),
        "end": interval.end.isoformat(), "bronze_rows": bronze_rows, "items": items, "silver_new": new_trades,
        "duplicates": valid - new_trades, "dead_letters": sum(counts.values()), "dead_letter_reasons": counts,
        "quality": {"bronze": bronze_quality, "silver": quality},
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
        first = _floor(lo, dt.timedelta(seconds=seconds))
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
        width = dt.timedelta(seconds=INTERVAL_SECONDS[name])
        merge_bars(spark, frame, _table(settings, gold_table(name).identifier), interval.exchange,
                   (_floor(lo, width), hi + width), BAR_KEY, MEASURES)
        frame.unpersist()
    return report


# --- quality gate and entry point ---------------------------------------------------------------
def quality_gate(settings: Settings) -> Gate:
    def gate(layer: str, frame: DataFrame, interval: Interval) -> dict[str, Any]:
        from pyspark import StorageLevel

        from k2.monitoring.alerts import send_alert
        from k2.quality import QualityGateFailed, enforce, validate

        if layer != "bronze":
            # GX reads the frame once per metric, and the caller then publishes the same frame:
            # computed once. Bronze is only re-read column-wise from Parquet; caching it would
            # hold every raw payload in memory.
            frame.persist(StorageLevel.MEMORY_AND_DISK)
        report = validate(layer, frame, settings=settings, exchange=interval.exchange,
                          run_name=interval.label.replace("/", "_"))
        if not report.passed:
            send_alert("critical", f"quality {layer}.{interval.exchange}", str(QualityGateFailed(report)))
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
    if layer == "silver":
        from k2.monitoring.metrics import record_silver_run

        record_silver_run(settings, report)  # monitoring's dead-letter ratio
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
