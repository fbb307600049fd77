"""Bronze -> Silver for one exchange and interval: read -> parse and classify -> account -> keep
what is new -> gate -> write. Every Bronze item ends in exactly one of: a new Silver trade, a dead
letter, or a counted duplicate (of a trade in this interval or already in Silver).

Appends what is new after anti-joins against Silver and the dead letters; only one Silver task per
exchange runs at a time (the DAG says so), so the anti-joins are the whole idempotency story.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from k2.exchanges import Exchange, get_exchange, known_symbols
from k2.lake.names import qualified
from k2.lake.tables import DEAD_LETTER, SILVER_TRADES, bronze_table
from k2.medallion.interval import Interval
from k2.medallion.lakeio import append, between
from k2.medallion.reports import SilverReport
from k2.settings import Settings

if TYPE_CHECKING:
    from pyspark.sql import Column, DataFrame, SparkSession

    from k2.medallion.job import Gate


@dataclass(frozen=True)
class Accounting:
    """Items per outcome of one interval, from one pass over the classified rows."""

    counts: dict[str | None, int]  # reason (None: valid) -> items
    bronze_rows: int
    valid_span: tuple | None  # event-time (min, max) of the valid trades, to prune Silver's partitions


def read_bronze(spark: SparkSession, settings: Settings, exchange: Exchange, interval: Interval) -> DataFrame:
    table = qualified(settings.lake.catalog_name, bronze_table(exchange.name).identifier)
    return spark.table(table).where(between("kafka_timestamp", interval.start, interval.end))


def classify_items(settings: Settings, exchange: Exchange, bronze: DataFrame) -> DataFrame:
    """Parsed, classified and ranked (the de-duplication's one shuffle), and cached once: it feeds
    the accounting, Silver and the dead letters. Filtering before the cache would be slower: Spark
    pushes a filter on ``reason`` below the JSON parse, inlining the parse into every condition."""
    from pyspark import StorageLevel

    from k2.medallion.transforms.silver import SilverRules, classify, outcome_columns, rank_copies

    rules = SilverRules(
        exchange.name,
        known_symbols(settings, exchange),
        settings.batch.silver_max_event_lead_s,
        settings.batch.silver_max_event_age_s,
    )
    return rank_copies(outcome_columns(classify(exchange.parse_bronze(bronze), rules))).persist(
        StorageLevel.MEMORY_AND_DISK
    )


def account(classified: DataFrame) -> Accounting:
    """Items per outcome, Bronze rows (each has one item at index 0 or -1), and the valid span."""
    from pyspark.sql import functions as F

    stats = (
        classified.groupBy("reason")
        .agg(
            F.count(F.lit(1)).alias("n"),
            F.sum((F.col("item_index") <= 0).cast("int")).alias("rows"),
            F.min("event_time").alias("lo"),
            F.max("event_time").alias("hi"),
        )
        .collect()
    )
    span = next(((r["lo"], r["hi"]) for r in stats if r["reason"] is None), None)
    return Accounting({r["reason"]: r["n"] for r in stats}, sum(r["rows"] for r in stats), span)


def new_trades(
    spark: SparkSession, settings: Settings, exchange: str, classified: DataFrame, span: tuple | None, now: Column
) -> DataFrame:
    """The first copy of each valid trade, less the trades Silver already holds (duplicates across
    intervals), looked up in the partitions of the valid trades' event-time span only."""
    from pyspark.sql import functions as F

    from k2.medallion.transforms.silver import to_trades

    fresh = to_trades(classified.where(F.col("copy") == 1), exchange, now)
    if span is None:
        return fresh
    key = list(SILVER_TRADES.identifier_columns)
    existing = (
        spark.table(qualified(settings.lake.catalog_name, SILVER_TRADES.identifier))
        .where(
            (F.col("exchange") == exchange)
            & (F.col("event_time") >= F.lit(span[0]))
            & (F.col("event_time") <= F.lit(span[1]))
        )
        .select(*key)
    )
    return fresh.join(existing, key, "left_anti")


def new_dead_letters(
    spark: SparkSession, settings: Settings, interval: Interval, classified: DataFrame, now: Column
) -> DataFrame:
    """Rejected items, less those an earlier run of the interval already recorded."""
    from pyspark.sql import functions as F

    from k2.medallion.transforms.silver import to_dead_letters

    key = list(DEAD_LETTER.identifier_columns)
    seen = (
        spark.table(qualified(settings.lake.catalog_name, DEAD_LETTER.identifier))
        .where((F.col("exchange") == interval.exchange) & between("kafka_timestamp", interval.start, interval.end))
        .select(*key)
    )
    return to_dead_letters(classified, interval.exchange, now).join(seen, key, "left_anti")


def write(settings: Settings, trades: DataFrame, dead: DataFrame, label: str) -> int:
    """Appends both; returns the number of new trades, counted while they are written."""
    from pyspark.sql import Observation
    from pyspark.sql import functions as F

    written = Observation(f"silver_new_{label}")
    append(
        trades.observe(written, F.count(F.lit(1)).alias("rows")),
        qualified(settings.lake.catalog_name, SILVER_TRADES.identifier),
    )
    append(dead, qualified(settings.lake.catalog_name, DEAD_LETTER.identifier))
    return written.get["rows"]


def run_silver(spark: SparkSession, settings: Settings, interval: Interval, gate: Gate) -> SilverReport:
    from pyspark.sql import functions as F

    exchange = get_exchange(interval.exchange)
    now = F.current_timestamp()
    report = SilverReport(exchange.name, interval.start.isoformat(), interval.end.isoformat())
    bronze = read_bronze(spark, settings, exchange, interval)
    report.quality["bronze"] = gate("bronze", bronze, interval)
    classified = classify_items(settings, exchange, bronze)
    try:
        accounting = account(classified)
        trades = new_trades(spark, settings, exchange.name, classified, accounting.valid_span, now)
        dead = new_dead_letters(spark, settings, interval, classified, now)
        report.quality["silver"] = gate("silver", trades, interval)
        report.silver_new = write(settings, trades, dead, interval.label)
        trades.unpersist()  # cached by the quality gate
    finally:
        classified.unpersist()
    counts = dict(accounting.counts)
    valid = counts.pop(None, 0)
    report.bronze_rows, report.items = accounting.bronze_rows, valid + sum(counts.values())
    report.duplicates, report.dead_letters = valid - report.silver_new, sum(counts.values())
    report.dead_letter_reasons = {str(k): v for k, v in counts.items()}
    if not report.balances():
        raise RuntimeError(f"Silver accounting does not add up for {interval.label}: {report}")
    return report
