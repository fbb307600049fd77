"""Silver trades -> OHLCV bars. Open and close follow event time with the trade id as tie-break, so
a bar is a deterministic function of its trades; coarser bars are rolled up from 1-minute bars,
which gives the same values as aggregating their trades directly.

Sums never fail (Spark 4 runs ANSI mode, where an overflowing ``sum`` throws): Silver bounds each
trade's price, quantity and quote amount (``k2.medallion.transforms.silver.MAX_PRICE`` and co.) so
that a bar's sums fit DECIMAL(38,18) for up to 1e8 trades; past that, ``try_sum`` makes the measure
null, which the Gold quality gate reports as a critical finding instead of a wrong bar."""

from __future__ import annotations

from pyspark.sql import Column, DataFrame
from pyspark.sql import functions as F

from k2.gaps.detect import NUMERIC_ID
from k2.lake.names import BAR_WIDTHS_S
from k2.lake.names import MONEY_SQL as MONEY

INTERVAL_SECONDS = BAR_WIDTHS_S
BAR_KEY = ("exchange", "symbol", "bar_start")
MEASURES = (
    "open",
    "high",
    "low",
    "close",
    "volume_base",
    "volume_quote",
    "vwap",
    "trade_count",
    "taker_buy_base",
    "taker_sell_base",
    "first_trade_id",
    "last_trade_id",
    "complete",
)


def bar_start(ts: Column, interval: str) -> Column:
    seconds = INTERVAL_SECONDS[interval]
    return F.timestamp_seconds(F.floor(F.unix_seconds(ts) / seconds) * seconds)


def trade_order(event_time: str = "event_time", trade_id: str = "trade_id") -> Column:
    """Sort key of trades in a bar: event time, then trade id in numeric order for numeric ids."""
    return F.struct(F.col(event_time), F.length(trade_id), F.col(trade_id))


def id_order(trade_id: str) -> Column:
    """Sort key of trade ids: numeric order for numeric ids (shorter first), text order otherwise."""
    return F.when(F.col(trade_id).isNotNull(), F.struct(F.length(trade_id), F.col(trade_id)))


def contiguous(first: Column, last: Column, count: Column, known: Column) -> Column:
    """The bar's ids run from first to last without a hole: ids are unique per symbol in Silver, so
    that is ``last - first + 1 == trades``; null (unknown) where ids are not integers (``known``).
    It says the same as "no open gap of ops.trade_gaps lies inside [first, last]", but from the bar's
    own trades, so a bar computed on the fly (k2.query.bars) gets the flag Gold will hold."""
    span = F.try_add(F.try_subtract(last.cast("bigint"), first.cast("bigint")), F.lit(1))
    return F.when(known, span == count)


def vwap(volume_quote: Column, volume_base: Column, low: Column, high: Column) -> Column:
    """volume_quote / volume_base with 12 fractional digits, kept inside [low, high] where rounding
    would step outside (the true VWAP always lies there)."""
    precise = F.try_divide(volume_quote.try_cast("decimal(34,18)"), volume_base.try_cast("decimal(28,10)"))
    # each branch becomes MONEY on its own: coalesce would otherwise widen to the coarser scale
    value = F.coalesce(precise.try_cast(MONEY), F.try_divide(volume_quote, volume_base).try_cast(MONEY))
    return F.least(F.greatest(value, low), high)


def _finish(bars: DataFrame, interval: str, computed_at: Column) -> DataFrame:
    return bars.select(
        *BAR_KEY,
        (F.col("bar_start") + F.expr(f"INTERVAL {INTERVAL_SECONDS[interval]} SECONDS")).alias("bar_end"),
        F.col("open").cast(MONEY).alias("open"),
        F.col("high").cast(MONEY).alias("high"),
        F.col("low").cast(MONEY).alias("low"),
        F.col("close").cast(MONEY).alias("close"),
        F.col("volume_base").cast(MONEY).alias("volume_base"),
        F.col("volume_quote").cast(MONEY).alias("volume_quote"),
        vwap(F.col("volume_quote"), F.col("volume_base"), F.col("low"), F.col("high")).alias("vwap"),
        F.col("trade_count").cast("bigint").alias("trade_count"),
        F.col("taker_buy_base").cast(MONEY).alias("taker_buy_base"),
        F.col("taker_sell_base").cast(MONEY).alias("taker_sell_base"),
        computed_at.alias("computed_at"),
        "first_trade_id",
        "last_trade_id",
        contiguous(F.col("first_trade_id"), F.col("last_trade_id"), F.col("trade_count"), F.col("_known")).alias(
            "complete"
        ),
    )


def minute_bars(trades: DataFrame, computed_at: Column) -> DataFrame:
    """``silver.trades`` rows -> ``gold.ohlcv_1m`` rows."""
    qty = F.col("quantity")
    bars = (
        trades.withColumn("bar_start", bar_start(F.col("event_time"), "1m"))
        .groupBy(*BAR_KEY)
        .agg(
            F.min_by("price", trade_order()).alias("open"),
            F.max("price").alias("high"),
            F.min("price").alias("low"),
            F.max_by("price", trade_order()).alias("close"),
            F.try_sum(qty).alias("volume_base"),
            F.try_sum("quote_amount").alias("volume_quote"),
            F.count(F.lit(1)).alias("trade_count"),
            F.try_sum(F.when(F.col("taker_side") == "buy", qty).otherwise(F.lit(0))).alias("taker_buy_base"),
            F.try_sum(F.when(F.col("taker_side") == "sell", qty).otherwise(F.lit(0))).alias("taker_sell_base"),
            F.min_by("trade_id", id_order("trade_id")).alias("first_trade_id"),
            F.max_by("trade_id", id_order("trade_id")).alias("last_trade_id"),
            F.bool_and(F.col("trade_id").rlike(NUMERIC_ID)).alias("_known"),
        )
    )
    return _finish(bars, "1m", computed_at)


def roll_up(minute: DataFrame, interval: str, computed_at: Column) -> DataFrame:
    """``gold.ohlcv_1m`` rows -> bars of a coarser ``interval`` (5m, 1h, 1d)."""
    bars = (
        minute.withColumn("bar_start_1m", F.col("bar_start"))
        .withColumn("bar_start", bar_start(F.col("bar_start"), interval))
        .groupBy(*BAR_KEY)
        .agg(
            F.min_by("open", F.col("bar_start_1m")).alias("open"),
            F.max("high").alias("high"),
            F.min("low").alias("low"),
            F.max_by("close", F.col("bar_start_1m")).alias("close"),
            F.try_sum("volume_base").alias("volume_base"),
            F.try_sum("volume_quote").alias("volume_quote"),
            F.try_sum("trade_count").alias("trade_count"),
            F.try_sum("taker_buy_base").alias("taker_buy_base"),
            F.try_sum("taker_sell_base").alias("taker_sell_base"),
            F.min_by("first_trade_id", id_order("first_trade_id")).alias("first_trade_id"),
            F.max_by("last_trade_id", id_order("last_trade_id")).alias("last_trade_id"),
            # every minute's flag known (bars Gold wrote before it had the flag are not)
            F.bool_and(F.col("complete").isNotNull()).alias("_known"),
        )
    )
    return _finish(bars, interval, computed_at)
