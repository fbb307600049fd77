"""Silver -> Gold for one exchange and interval: find the bars the interval's trades touch ->
recompute them (1m from all of Silver, coarser widths rolled up from 1m) -> gate -> MERGE. Late
trades re-open old bars; a re-run commits nothing new."""

from __future__ import annotations

import datetime as dt
from typing import TYPE_CHECKING

from k2.lake.names import GOLD_INTERVAL_NAMES, qualified
from k2.lake.tables import SILVER_TRADES, gold_table
from k2.medallion.interval import Interval
from k2.medallion.lakeio import Held, between, held_locally, merge_bars
from k2.medallion.reports import GoldReport, timed
from k2.settings import LakeSettings, Settings

if TYPE_CHECKING:
    from pyspark.sql import Column, DataFrame, SparkSession

    from k2.medallion.job import Gate


def floor_time(moment: dt.datetime, width: dt.timedelta) -> dt.datetime:
    """``moment`` floored to a multiple of ``width`` since the epoch, in UTC. A naive ``moment`` is what
    pyspark collects from a timestamp column: the driver's local time (not UTC, whatever Spark's
    session time zone), which ``timestamp()`` reads as such."""
    seconds = width.total_seconds()
    return dt.datetime.fromtimestamp(moment.timestamp() // seconds * seconds, dt.UTC)


def as_utc(moment: dt.datetime) -> dt.datetime:
    """A collected timestamp as an aware UTC datetime (naive ones are the driver's local time)."""
    return dt.datetime.fromtimestamp(moment.timestamp(), dt.UTC)


def span_of(touched: list) -> tuple[dt.datetime, dt.datetime]:
    """First and last touched minute, in UTC: they end up in SQL literals, read in UTC."""
    return as_utc(min(r["bar_start"] for r in touched)), as_utc(max(r["bar_start"] for r in touched))


def touched_minutes(silver: DataFrame, interval: Interval) -> list:
    """(exchange, symbol, 1m bar start) of every trade whose Bronze record arrived in the interval
    (the Silver rows the same interval's Silver run wrote, late trades included)."""
    from pyspark.sql import functions as F

    from k2.medallion.transforms.gold import bar_start

    return (
        silver.where(between("bronze_ingested_at", interval.start, interval.end))
        .select("exchange", "symbol", bar_start(F.col("event_time"), "1m").alias("bar_start"))
        .distinct()
        .collect()
    )


def recompute_bars(
    spark: SparkSession, lake: LakeSettings, interval: Interval, silver: DataFrame, touched: list, now: Column
) -> dict[str, Held]:
    """Every bar of every width that holds a touched minute, held in the driver (bars are small: they
    feed the roll-ups, the gates and the MERGE, which cannot plan a source that still reads other
    Iceberg tables through a cached relation): the 1m bars in one Spark job, the coarser widths,
    rolled up from them, in another."""
    from pyspark.sql import functions as F

    from k2.medallion.transforms.gold import BAR_KEY, INTERVAL_SECONDS, bar_start, minute_bars, roll_up

    keys_1m = spark.createDataFrame(touched, schema="exchange string, symbol string, bar_start timestamp")
    lo, hi = span_of(touched)
    window = (F.col("event_time") >= F.lit(lo)) & (F.col("event_time") < F.lit(hi + dt.timedelta(minutes=1)))
    trades = (
        silver.where(window)
        .withColumn("_bar", bar_start(F.col("event_time"), "1m"))
        .join(F.broadcast(keys_1m.withColumnRenamed("bar_start", "_bar")), ["exchange", "symbol", "_bar"], "left_semi")
        .drop("_bar")
    )
    bars = held_locally(spark, {"1m": minute_bars(trades, now)})
    gold_1m = spark.table(qualified(lake.catalog_name, gold_table("1m").identifier))
    coarser = {}
    for name in GOLD_INTERVAL_NAMES[1:]:
        seconds = INTERVAL_SECONDS[name]
        first = floor_time(lo, dt.timedelta(seconds=seconds))
        coarse = keys_1m.select("exchange", "symbol", bar_start(F.col("bar_start"), name).alias("_bar")).distinct()
        # the coarse bars' other minutes come from Gold 1m, the touched minutes from the fresh bars
        others = gold_1m.where(
            (F.col("exchange") == interval.exchange)
            & (F.col("bar_start") >= F.lit(first))
            & (F.col("bar_start") < F.lit(hi + dt.timedelta(seconds=seconds)))
        ).join(bars["1m"].frame.select(*BAR_KEY), list(BAR_KEY), "left_anti")
        minutes = (
            others.unionByName(bars["1m"].frame)
            .withColumn("_bar", bar_start(F.col("bar_start"), name))
            .join(F.broadcast(coarse), ["exchange", "symbol", "_bar"], "left_semi")
            .drop("_bar")
        )
        coarser[name] = roll_up(minutes, name, now)
    return bars | held_locally(spark, coarser)  # the roll-ups in one job


def publish(
    spark: SparkSession, lake: LakeSettings, exchange: str, bars: dict[str, Held], touched: list
) -> dict[str, int]:
    """MERGE each width's bars into its table; returns bars per width."""
    from k2.medallion.transforms.gold import BAR_KEY, INTERVAL_SECONDS, MEASURES

    lo, hi = span_of(touched)
    counts = {}
    for name, held in bars.items():
        counts[name] = held.rows.num_rows
        width = dt.timedelta(seconds=INTERVAL_SECONDS[name])
        merge_bars(
            spark,
            held.frame,
            qualified(lake.catalog_name, gold_table(name).identifier),
            exchange,
            (floor_time(lo, width), hi + width),
            BAR_KEY,
            MEASURES,
        )
    return counts


def run_gold(spark: SparkSession, settings: Settings, interval: Interval, gate: Gate) -> GoldReport:
    from pyspark.sql import functions as F

    report = GoldReport(interval.exchange, interval.start.isoformat(), interval.end.isoformat())
    silver = spark.table(qualified(settings.lake.catalog_name, SILVER_TRADES.identifier)).where(
        F.col("exchange") == interval.exchange
    )
    steps = report.steps_s
    with timed(steps, "touched"):
        touched = touched_minutes(silver, interval)
    if not touched:
        return report
    with timed(steps, "recompute"):
        bars = recompute_bars(spark, settings.lake, interval, silver, touched, F.current_timestamp())
    with timed(steps, "gates"):
        for name, held in bars.items():  # every gate passes before any bar is published
            report.quality[name] = gate(f"gold_{name}", held.rows, interval)
    with timed(steps, "merge"):
        report.bars = publish(spark, settings.lake, interval.exchange, bars, touched)
    return report
