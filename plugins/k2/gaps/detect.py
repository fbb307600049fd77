"""Gaps in the trade ids, found in Silver by the batch (the Silver run of each interval, after its
write) and kept in ``ops.trade_gaps``.

Binance trade ids and Kraken v2 trade_ids are sequential per symbol: an id missing between two
trades Silver holds is a trade K2 never received (a reconnect, a dropped frame). Silver's
``trade_id`` is text (exchanges differ); only ids that are plain non-negative integers are
gap-checked, anything else is left out of the check (never a false gap).

Each run reads the exchange's Silver trades over the event-time span of the interval's trades,
widened by ``K2_GAPS_NEIGHBOUR_WINDOW_S`` on both sides so that the trades just before the interval
(already in Silver) are the neighbours of its first ones. The ids of a symbol grow with event time,
so the trades of a time window hold a contiguous run of the ids Silver has: every gap inside it is
real. The gaps found there are merged into the table; a gap recorded before whose two neighbours lie
in the window and that is no longer found was filled (late or repaired trades reach Silver through
Bronze like any other) and is closed. What is left of a partly filled gap is a gap of its own.

A gap is explained by a disconnect when one of the feed's outages (from a ``disconnected`` event to
the next ``connected``; the disconnect's own moment while none followed) overlaps
[after_time, before_time], give or take ``CLOCK_MARGIN`` (trade times are the exchange's clock,
events the feed's).
"""

from __future__ import annotations

import datetime as dt
from typing import TYPE_CHECKING

from k2.feeds.events import CONNECTED, DISCONNECTED

if TYPE_CHECKING:
    from pyspark.sql import Column, DataFrame

NUMERIC_ID = "^[0-9]{1,18}$"  # fits a long: larger or non-integer ids are not gap-checked
CLOCK_MARGIN = dt.timedelta(seconds=5)
GAP_KEY = ("exchange", "symbol", "first_missing_id")
GAP_COLUMNS = (
    "exchange",
    "symbol",
    "exchange_symbol",
    "first_missing_id",
    "last_missing_id",
    "missing_count",
    "after_time",
    "before_time",
    "explained_by_disconnect",
    "detected_at",
    "closed_at",
)


def numeric_id(column: str = "trade_id") -> Column:
    """The id as a long when it is a plain integer, else null."""
    from pyspark.sql import functions as F

    return F.when(F.col(column).rlike(NUMERIC_ID), F.col(column).cast("bigint"))


def find_gaps(trades: DataFrame) -> DataFrame:
    """Silver trades (exchange, symbol, exchange_symbol, trade_id, event_time) -> one row per run of
    missing ids between two consecutive ids of a symbol."""
    from pyspark.sql import Window
    from pyspark.sql import functions as F

    ids = trades.select("exchange", "symbol", "exchange_symbol", numeric_id().alias("id"), "event_time").where(
        F.col("id").isNotNull()
    )
    order = Window.partitionBy("exchange", "symbol").orderBy("id")
    paired = ids.withColumn("prev_id", F.lag("id").over(order)).withColumn("prev_time", F.lag("event_time").over(order))
    return paired.where(F.col("id") - F.col("prev_id") > 1).select(
        "exchange",
        "symbol",
        "exchange_symbol",
        (F.col("prev_id") + 1).alias("first_missing_id"),
        (F.col("id") - 1).alias("last_missing_id"),
        (F.col("id") - F.col("prev_id") - 1).alias("missing_count"),
        F.col("prev_time").alias("after_time"),
        F.col("event_time").alias("before_time"),
    )


def outages(events: DataFrame) -> DataFrame:
    """``ops.connection_events`` rows -> (exchange, down_from, down_until): each disconnect until the
    feed's next connect, or its own moment when none followed (yet)."""
    from pyspark.sql import Window
    from pyspark.sql import functions as F

    later = (
        Window.partitionBy("exchange")
        .orderBy("event_time", "kafka_partition", "kafka_offset")
        .rowsBetween(1, Window.unboundedFollowing)
    )
    next_up = F.min(F.when(F.col("event") == CONNECTED, F.col("event_time"))).over(later)
    return (
        events.withColumn("_next_up", next_up)
        .where(F.col("event") == DISCONNECTED)
        .select(
            "exchange",
            F.col("event_time").alias("down_from"),
            F.coalesce("_next_up", "event_time").alias("down_until"),
        )
    )


def explain(gaps: DataFrame, down: DataFrame, margin: dt.timedelta = CLOCK_MARGIN) -> DataFrame:
    """Adds ``explained_by_disconnect``: an outage overlaps [after_time - margin, before_time + margin]."""
    from pyspark.sql import functions as F

    pad = F.expr(f"INTERVAL {int(margin.total_seconds() * 1_000_000)} MICROSECONDS")
    g, o = gaps.alias("g"), down.alias("o")
    overlap = (
        (F.col("g.exchange") == F.col("o.exchange"))
        & (F.col("o.down_from") <= F.col("g.before_time") + pad)
        & (F.col("o.down_until") >= F.col("g.after_time") - pad)
    )
    hit = g.join(o, overlap, "left_semi").select(*GAP_KEY).withColumn("_hit", F.lit(True))
    return gaps.join(hit, list(GAP_KEY), "left").select(
        *gaps.columns, F.coalesce(F.col("_hit"), F.lit(False)).alias("explained_by_disconnect")
    )


def reconcile(found: DataFrame, recorded_open: DataFrame, now: Column) -> DataFrame:
    """The rows to MERGE into ``ops.trade_gaps``: every gap found (open, detected now unless the
    table has it already: the MERGE keeps its detected_at), and every recorded open gap of the
    window that is not found as it was (its ids are in Silver now, or some of them) closed now."""
    from pyspark.sql import functions as F

    opened = found.select(
        *(c for c in GAP_COLUMNS if c not in ("detected_at", "closed_at")),
        now.alias("detected_at"),
        F.lit(None).cast("timestamp").alias("closed_at"),
    )
    same = [*GAP_KEY, "last_missing_id"]
    filled = recorded_open.join(found.select(*same), same, "left_anti").select(
        *(c for c in GAP_COLUMNS if c != "closed_at"), now.alias("closed_at")
    )
    # a partly filled gap whose first id is still missing is found again under the same key: an update
    closed = filled.join(found.select(*GAP_KEY), list(GAP_KEY), "left_anti")
    return opened.unionByName(closed)


def record_gaps(spark, settings, exchange: str, span: tuple | None) -> tuple[int, int]:
    """Finds the gaps around the interval's trades (event-time ``span``, the Silver run's valid span)
    and merges them into ``ops.trade_gaps``; returns (open gaps found, gaps closed now)."""
    from k2.lake.names import TRADE_GAPS_ID, qualified

    if span is None:
        return 0, 0
    rows = gaps_around(spark, settings, exchange, span)
    opened, closed = gap_counts(rows)
    if opened or closed:  # no gap around the interval: nothing to commit
        merge_gaps(spark, rows, qualified(settings.lake.catalog_name, TRADE_GAPS_ID))
    return opened, closed


def gaps_around(spark, settings, exchange: str, span: tuple) -> DataFrame:
    """The gaps found around ``span`` reconciled with those recorded (new, changed, closed), computed
    once; reads only."""
    from pyspark.sql import functions as F

    from k2.lake.names import CONNECTION_EVENTS_ID, SILVER_TRADES_ID, TRADE_GAPS_ID, qualified

    catalog = settings.lake.catalog_name
    window = dt.timedelta(seconds=settings.batch.gaps_neighbour_window_s)
    lo, hi = span[0] - window, span[1] + window
    trades = spark.table(qualified(catalog, SILVER_TRADES_ID)).where(
        (F.col("exchange") == exchange) & (F.col("event_time") >= F.lit(lo)) & (F.col("event_time") <= F.lit(hi))
    )
    # an outage that began up to a week before the window may still be going on inside it
    events = spark.table(qualified(catalog, CONNECTION_EVENTS_ID)).where(
        (F.col("exchange") == exchange)
        & (F.col("event_time") >= F.lit(lo - dt.timedelta(days=7)))
        & (F.col("event_time") <= F.lit(hi + CLOCK_MARGIN))
    )
    found = explain(find_gaps(trades), outages(events))
    recorded = spark.table(qualified(catalog, TRADE_GAPS_ID)).where(
        (F.col("exchange") == exchange)
        & F.col("closed_at").isNull()
        & (F.col("after_time") >= F.lit(lo))
        & (F.col("before_time") <= F.lit(hi))
    )
    return reconcile(found, recorded, F.current_timestamp()).localCheckpoint()


def gap_counts(rows: DataFrame) -> tuple[int, int]:
    """(open, closed) among reconciled gap rows."""
    from pyspark.sql import functions as F

    counts = rows.agg(
        F.count_if(F.col("closed_at").isNull()).alias("open"),
        F.count_if(F.col("closed_at").isNotNull()).alias("closed"),
    ).first()
    return counts["open"], counts["closed"]


def merge_gaps(spark, rows: DataFrame, table: str) -> None:
    """Insert new gaps; update those whose extent, explanation or state changed (keeping when they
    were first detected); leave equal ones alone, so a re-run commits nothing new."""
    import time

    view = f"k2_gaps_{time.time_ns()}"
    rows.createOrReplaceTempView(view)
    on = " AND ".join(f"t.{c} = s.{c}" for c in GAP_KEY)
    updated = [c for c in GAP_COLUMNS if c not in (*GAP_KEY, "detected_at")]
    changed = " OR ".join(f"NOT (t.{c} <=> s.{c})" for c in updated)
    assign = ", ".join(f"t.{c} = s.{c}" for c in updated)
    try:
        spark.sql(f"""MERGE INTO {table} t USING {view} s ON {on}
                      WHEN MATCHED AND ({changed}) THEN UPDATE SET {assign}
                      WHEN NOT MATCHED THEN INSERT *""")
    finally:
        spark.catalog.dropTempView(view)
