"""Bronze -> Silver for one exchange and interval: read -> parse and classify -> account -> keep
what is new -> gate -> write -> record the gaps in the trade ids (k2.gaps). Every Bronze item ends
in exactly one of: a new Silver trade, a dead letter, or a counted duplicate (of a trade in this
interval or already in Silver); a feed's connection event, split off first, goes to
``ops.connection_events``.

The accounting adds up quantities counted on their own: items, dead letters and later copies within
the interval (one pass over the classified items), first copies Silver already holds (a semi-join of
their keys), and the trades the write committed (counted while written). A row lost between them (a
faulty anti-join, a write that drops one) fails the task instead of passing for a duplicate.

Appends what is new after anti-joins against Silver and the dead letters; only one Silver task per
exchange runs at a time (the DAG says so), so the anti-joins are the whole idempotency story.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from k2.errors import K2Error
from k2.exchanges import Exchange, get_exchange, known_symbols
from k2.gaps.detect import record_gaps
from k2.lake.names import qualified
from k2.lake.tables import DEAD_LETTER, SILVER_TRADES, bronze_table
from k2.medallion.interval import Interval
from k2.medallion.lakeio import append, between, materialize
from k2.medallion.reports import SilverReport, timed
from k2.settings import LakeSettings, Settings

if TYPE_CHECKING:
    from pyspark.sql import Column, DataFrame, SparkSession

    from k2.medallion.job import Gate


class SilverAccountingError(K2Error):
    """The interval's items do not add up to trades written + duplicates + dead letters."""


@dataclass(frozen=True)
class Accounting:
    """Items per outcome of one interval, from one pass over the classified rows."""

    counts: dict[str | None, int]  # reason (None: valid) -> items
    bronze_rows: int
    valid_span: tuple | None  # event-time (min, max) of the valid trades, to prune Silver's partitions
    kafka_span: tuple | None  # Kafka-timestamp (min, max) of the items, to prune the dead letters' partitions
    later_copies: int = 0  # valid items that repeat an earlier one of the interval: duplicates within it


def read_bronze(spark: SparkSession, lake: LakeSettings, exchange: Exchange, interval: Interval) -> DataFrame:
    """The Bronze rows the stream wrote in the interval (by ``ingested_at``, which only grows: a
    record whose producer stamped it inside an earlier, processed interval is read by the interval
    it arrived in). The files' column bounds prune the scan to the interval's micro-batches."""
    table = qualified(lake.catalog_name, bronze_table(exchange.name).identifier)
    return spark.read.options(**BRONZE_READ).table(table).where(between("ingested_at", interval.start, interval.end))


# The streams commit a file per Kafka partition every second or so, of 30-500 KB. Iceberg counts
# each file as 4 MB when it packs them into 128 MB read tasks, so 3 minutes of Binance at 10,000
# msg/s (1.8M rows, 48 MB) were 96 tasks, and every pass over the cached rows (the gates run
# 15-20) scheduled 96 tasks: on shared cores a task's fixed cost dominates. Packing by the bytes
# the files hold gives a few tasks of about 1M rows each, still more tasks than cores.
BRONZE_READ = {"split-size": str(32 << 20), "file-open-cost": str(512 << 10)}


def classify_items(settings: Settings, exchange: Exchange, bronze: DataFrame) -> DataFrame:
    """Parsed, classified and ranked (the de-duplication's one shuffle), and cached once: it feeds
    the accounting, Silver and the dead letters. Filtering before the cache would be slower: Spark
    pushes a filter on ``reason`` below the JSON parse, inlining the parse into every condition."""
    from k2.medallion.transforms.silver import SilverRules, classify, outcome_columns, rank_copies

    rules = SilverRules(
        exchange.name,
        known_symbols(settings, exchange),
        settings.batch.silver_max_event_lead_s,
        settings.batch.silver_max_event_age_s,
        exchange.payload_fields,
    )
    return materialize(rank_copies(outcome_columns(classify(exchange.parse_bronze(bronze), rules))))


def account(classified: DataFrame) -> Accounting:
    """Items per outcome, Bronze rows (each has one item at index 0 or -1), the valid span, and the
    valid items that are later copies (rank > 1) of a trade of the interval."""
    from pyspark.sql import functions as F

    stats = (
        classified.groupBy("reason")
        .agg(
            F.count(F.lit(1)).alias("n"),
            F.sum((F.col("item_index") <= 0).cast("int")).alias("rows"),
            F.min("event_time").alias("lo"),
            F.max("event_time").alias("hi"),
            F.count_if(F.col("copy") > 1).alias("later"),
            F.min("kafka_timestamp").alias("k_lo"),
            F.max("kafka_timestamp").alias("k_hi"),
        )
        .collect()
    )
    valid = next((r for r in stats if r["reason"] is None), None)
    return Accounting(
        {r["reason"]: r["n"] for r in stats},
        sum(r["rows"] for r in stats),
        None if valid is None else (valid["lo"], valid["hi"]),
        (min(r["k_lo"] for r in stats), max(r["k_hi"] for r in stats)) if stats else None,
        0 if valid is None else valid["later"],
    )


def silver_keys(spark: SparkSession, lake: LakeSettings, exchange: str, span: tuple) -> DataFrame:
    """Keys of the exchange's Silver trades in an event-time span (its partitions only)."""
    from pyspark.sql import functions as F

    return (
        spark.table(qualified(lake.catalog_name, SILVER_TRADES.identifier))
        .where(
            (F.col("exchange") == exchange)
            & (F.col("event_time") >= F.lit(span[0]))
            & (F.col("event_time") <= F.lit(span[1]))
        )
        .select(*SILVER_TRADES.identifier_columns)
    )


def known_trades(
    spark: SparkSession, lake: LakeSettings, exchange: str, classified: DataFrame, span: tuple | None
) -> int:
    """First copies of the valid trades that Silver already holds (duplicates across intervals),
    counted on their own: a semi-join, not what the anti-join in ``new_trades`` left out."""
    from pyspark.sql import functions as F

    if span is None:
        return 0
    first = classified.where((F.col("copy") == 1) & F.col("reason").isNull()).select("symbol", "trade_id")
    return first.join(silver_keys(spark, lake, exchange, span), ["symbol", "trade_id"], "left_semi").count()


def new_trades(
    spark: SparkSession, lake: LakeSettings, exchange: str, classified: DataFrame, span: tuple | None, now: Column
) -> DataFrame:
    """The first copy of each valid trade, less the trades Silver already holds (duplicates across
    intervals), looked up in the partitions of the valid trades' event-time span only."""
    from pyspark.sql import functions as F

    from k2.medallion.transforms.silver import to_trades

    fresh = to_trades(classified.where(F.col("copy") == 1), exchange, now)
    if span is None:
        return fresh
    return fresh.join(silver_keys(spark, lake, exchange, span), list(SILVER_TRADES.identifier_columns), "left_anti")


def recorded_dead_letters(spark: SparkSession, lake: LakeSettings, exchange: str, span: tuple) -> DataFrame:
    """Keys of the exchange's dead letters in a Kafka-timestamp span (its partitions only): what an
    earlier run recorded, whichever interval read the record then."""
    from pyspark.sql import functions as F

    return (
        spark.table(qualified(lake.catalog_name, DEAD_LETTER.identifier))
        .where(
            (F.col("exchange") == exchange)
            & (F.col("kafka_timestamp") >= F.lit(span[0]))
            & (F.col("kafka_timestamp") <= F.lit(span[1]))
        )
        .select(*DEAD_LETTER.identifier_columns)
    )


def new_dead_letters(
    spark: SparkSession, lake: LakeSettings, exchange: str, classified: DataFrame, span: tuple | None, now: Column
) -> DataFrame:
    """Rejected items, less those an earlier run already recorded."""
    from k2.medallion.transforms.silver import to_dead_letters

    fresh = to_dead_letters(classified, exchange, now)
    if span is None:
        return fresh
    return fresh.join(
        recorded_dead_letters(spark, lake, exchange, span), list(DEAD_LETTER.identifier_columns), "left_anti"
    )


def known_dead_letters(
    spark: SparkSession, lake: LakeSettings, exchange: str, classified: DataFrame, span: tuple | None
) -> int:
    """Rejected items an earlier run already recorded, counted on their own (a semi-join)."""
    from pyspark.sql import functions as F

    if span is None:
        return 0
    key = list(DEAD_LETTER.identifier_columns)
    rejected = classified.where(F.col("reason").isNotNull()).select(*key)
    return rejected.join(recorded_dead_letters(spark, lake, exchange, span), key, "left_semi").count()


def write(lake: LakeSettings, trades: DataFrame, dead: DataFrame, label: str) -> tuple[int, int]:
    """Appends both (materialized: the same rows however often they are read); returns the numbers
    of trades and dead letters, counted while they are written."""
    catalog = lake.catalog_name
    new = _append_counted(trades, qualified(catalog, SILVER_TRADES.identifier), f"silver_new_{label}")
    rejected = _append_counted(dead, qualified(catalog, DEAD_LETTER.identifier), f"silver_dead_{label}")
    return new, rejected


def _append_counted(frame: DataFrame, table: str, name: str) -> int:
    from pyspark.sql import Observation
    from pyspark.sql import functions as F

    observation = Observation(name)
    append(frame.observe(observation, F.count(F.lit(1)).alias("rows")), table)
    metrics = observation.get
    # a Spark Connect 4.1 server waits 100 ms for a command's observed metrics, then answers without
    # them (SPARK-54279): under `k2 up`'s load it did, and the task failed after its write
    return metrics["rows"] if "rows" in metrics else frame.count()


def run_silver(spark: SparkSession, settings: Settings, interval: Interval, gate: Gate) -> SilverReport:
    from pyspark.sql import functions as F

    exchange = get_exchange(interval.exchange)
    now = F.current_timestamp()
    report = SilverReport(exchange.name, interval.start.isoformat(), interval.end.isoformat())
    steps, lake = report.steps_s, settings.lake
    # read once: the gate, the events and the classification all pass over these rows
    with timed(steps, "read_bronze"):
        bronze = materialize(read_bronze(spark, lake, exchange, interval))
    with timed(steps, "gate_bronze"):
        report.quality["bronze"] = gate("bronze", bronze, interval)
    with timed(steps, "connection_events"):
        events, rest = split_connection_events(bronze)
        report.connection_events = write_connection_events(spark, lake, exchange.name, events)
    with timed(steps, "classify"):
        classified = classify_items(settings, exchange, rest)
    del bronze, events, rest  # the classified rows are kept from here on; Spark Connect frees the rest
    with timed(steps, "account"):
        accounting = account(classified)
        known = known_trades(spark, lake, exchange.name, classified, accounting.valid_span)
        known_dead = known_dead_letters(spark, lake, exchange.name, classified, accounting.kafka_span)
    # computed once for the gate and the write (Silver itself may move under a concurrent run's commit)
    with timed(steps, "new_trades"):
        trades = materialize(new_trades(spark, lake, exchange.name, classified, accounting.valid_span, now))
        dead = materialize(new_dead_letters(spark, lake, exchange.name, classified, accounting.kafka_span, now))
    with timed(steps, "gate_silver"):
        report.quality["silver"] = gate("silver", trades, interval)
    with timed(steps, "write"):
        report.silver_new, report.dead_letters_new = write(lake, trades, dead, interval.label)
    counts = dict(accounting.counts)
    counts.pop(None, None)
    # connection events are Bronze rows too: Silver accounts for them in ops.connection_events
    report.bronze_rows = accounting.bronze_rows + report.connection_events
    report.items = sum(accounting.counts.values())
    report.duplicates_in_interval, report.duplicates_in_silver = accounting.later_copies, known
    report.duplicates = accounting.later_copies + known
    report.dead_letters, report.dead_letters_known = sum(counts.values()), known_dead
    report.dead_letter_reasons = {str(k): v for k, v in counts.items()}
    check_accounting(report, interval)
    with timed(steps, "gaps"):
        report.gaps_open, report.gaps_closed = record_gaps(spark, settings, exchange.name, accounting.valid_span)
    return report


def rehearse(spark: SparkSession, settings: Settings, interval: Interval) -> None:
    """Silver's reads and transforms over the interval's Bronze rows, writing nothing: the Spark
    Connect server loads, analyses and compiles each plan's classes once, before the first task
    needs them (k2.runtime.spark_connect.warm_up). `k2 up`'s first Silver task paid about 20 s more
    than the next one on as many rows (classify 8.6 s against 3.3 s, gaps 6.0 against 2.7)."""
    from k2.gaps.detect import gap_counts, gaps_around
    from k2.medallion.transforms.events import to_connection_events

    exchange = get_exchange(interval.exchange)
    events, rest = split_connection_events(read_bronze(spark, settings.lake, exchange, interval))
    to_connection_events(events, exchange.name).count()
    accounting = account(classify_items(settings, exchange, rest))
    gap_counts(gaps_around(spark, settings, exchange.name, accounting.valid_span or (interval.start, interval.end)))


def split_connection_events(bronze: DataFrame) -> tuple[DataFrame, DataFrame]:
    """(connection events, every other row): events go to ``ops.connection_events``, never into the
    trades or the dead letters (k2.feeds.events)."""
    from pyspark.sql import functions as F

    from k2.medallion.transforms.events import event_fields

    flagged = event_fields(bronze)
    return flagged.where(F.col("is_event")), flagged.where(~F.col("is_event")).drop("_event", "is_event")


def write_connection_events(spark: SparkSession, lake: LakeSettings, exchange: str, events: DataFrame) -> int:
    """Appends the events an earlier run has not recorded; returns how many the interval holds
    (recorded now or before: each is one Bronze row Silver accounted for)."""
    from pyspark.sql import functions as F

    from k2.lake.tables import CONNECTION_EVENTS
    from k2.medallion.transforms.events import to_connection_events

    rows = to_connection_events(events, exchange).localCheckpoint()
    total = rows.count()
    if not total:
        return 0
    table = qualified(lake.catalog_name, CONNECTION_EVENTS.identifier)
    key = list(CONNECTION_EVENTS.identifier_columns)
    known = spark.table(table).where(F.col("exchange") == exchange).select(*key)
    append(rows.join(known, key, "left_anti"), table)
    return total


def check_accounting(report: SilverReport, interval: Interval) -> None:
    """Every item is a new trade, a counted duplicate or a dead letter, and every dead letter is
    written now or was before: each side counted on its own, so a lost row fails the task."""
    if report.balances() and report.dead_letters_stored():
        return
    raise SilverAccountingError(
        f"Silver accounting does not add up for {interval.label}: {report.silver_new} trades written + "
        f"{report.duplicates} duplicates ({report.duplicates_in_interval} within the interval, "
        f"{report.duplicates_in_silver} already in Silver) + {report.dead_letters} dead letters "
        f"({report.dead_letters_new} written, {report.dead_letters_known} recorded before) "
        f"!= {report.items} items of {report.bronze_rows} Bronze rows",
        "rows were lost (or doubled) between classification and the write: find the step that changed "
        "(a join, a filter, the writer), then re-run the interval; a re-run adds only what is missing.",
    )
