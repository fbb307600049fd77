"""Bronze candidates -> Silver trades and dead letters: the same validation for every exchange.

Input is what an exchange's ``parse_bronze`` yields (one row per trade found, see
``k2.exchanges.spark.CANDIDATE_COLUMNS``). Each candidate gets exactly one outcome: a ``reason``
(dead letter) or a typed trade. Spark 4 runs in ANSI mode, so every conversion of exchange text is
a ``try_`` conversion: bad input becomes a reason, never a failed job.
"""

from __future__ import annotations

from dataclasses import dataclass

from pyspark.sql import Column, DataFrame, Window
from pyspark.sql import functions as F

from k2.lake.names import MONEY_SQL as MONEY

SIDES = ("buy", "sell")


@dataclass(frozen=True)
class SilverRules:
    exchange: str
    symbols: dict[str, str]  # exchange symbol -> normalised symbol (BASE-QUOTE)
    max_event_lead_s: int = 300  # event time this far after the Kafka timestamp: clock error, reject
    max_event_age_s: int = 7 * 86_400  # event time this far before the Kafka timestamp: reject


def _text_to_money(text: str) -> Column:
    return F.col(text).try_cast(MONEY)


def quote_amount(price: Column, quantity: Column) -> Column:
    """price * quantity, exact for inputs of up to 8 decimals below 1e10 (16 fractional digits);
    larger inputs fall back to Spark's default decimal product (6 fractional digits)."""
    narrow = price.try_cast("decimal(28,18)") * quantity.try_cast("decimal(29,18)")
    # each branch becomes MONEY on its own: coalesce would otherwise widen to the coarser scale
    return F.coalesce(narrow.try_cast(MONEY), (price * quantity).try_cast(MONEY))


def classify(candidates: DataFrame, rules: SilverRules) -> DataFrame:
    """Adds typed columns and ``reason``/``detail`` (null for a valid trade). One row in, one row out."""
    symbol_map = (
        F.create_map(*[F.lit(x) for pair in sorted(rules.symbols.items()) for x in pair])
        if rules.symbols
        else F.create_map().cast("map<string,string>")
    )
    df = candidates.select(
        "*",
        symbol_map[F.col("exchange_symbol")].alias("symbol"),
        _text_to_money("price_text").alias("price"),
        _text_to_money("quantity_text").alias("quantity"),
    )
    lead = F.col("event_time") > F.col("kafka_timestamp") + F.expr(f"INTERVAL {rules.max_event_lead_s} SECONDS")
    age = F.col("event_time") < F.col("kafka_timestamp") - F.expr(f"INTERVAL {rules.max_event_age_s} SECONDS")
    checks: list[tuple[str, Column, Column]] = [
        ("missing_symbol", F.col("exchange_symbol").isNull(), F.lit("the trade has no symbol")),
        (
            "unknown_symbol",
            F.col("symbol").isNull(),
            F.concat(F.lit("symbol "), F.col("exchange_symbol"), F.lit(" is not configured for " + rules.exchange)),
        ),
        ("missing_trade_id", F.col("trade_id").isNull(), F.lit("the trade has no trade id")),
        ("missing_price", F.col("price_text").isNull(), F.lit("the trade has no price")),
        (
            "invalid_price",
            F.col("price").isNull(),
            F.concat(F.lit("price is not a decimal number: "), F.substring("price_text", 1, 100)),
        ),
        ("non_positive_price", F.col("price") <= 0, F.concat(F.lit("price must be > 0, got "), F.col("price_text"))),
        ("missing_quantity", F.col("quantity_text").isNull(), F.lit("the trade has no quantity")),
        (
            "invalid_quantity",
            F.col("quantity").isNull(),
            F.concat(F.lit("quantity is not a decimal number: "), F.substring("quantity_text", 1, 100)),
        ),
        (
            "non_positive_quantity",
            F.col("quantity") <= 0,
            F.concat(F.lit("quantity must be > 0, got "), F.col("quantity_text")),
        ),
        (
            "invalid_side",
            ~F.coalesce(F.col("taker_side").isin(*SIDES), F.lit(False)),
            F.lit("taker side is neither buy nor sell"),
        ),
        ("invalid_timestamp", F.col("event_time").isNull(), F.lit("the trade time is missing or unreadable")),
        (
            "future_timestamp",
            lead,
            F.concat(
                F.lit("event time "),
                F.col("event_time").cast("string"),
                F.lit(f" is over {rules.max_event_lead_s}s after its Kafka timestamp"),
            ),
        ),
        (
            "stale_timestamp",
            age,
            F.concat(
                F.lit("event time "),
                F.col("event_time").cast("string"),
                F.lit(f" is over {rules.max_event_age_s}s before its Kafka timestamp"),
            ),
        ),
    ]
    reason = F.when(F.col("parse_error").isNotNull(), F.col("parse_error"))
    detail = F.when(F.col("parse_error").isNotNull(), F.col("parse_detail"))
    for code, failed, why in checks:
        reason = reason.when(F.coalesce(failed, F.lit(False)), F.lit(code))
        detail = detail.when(F.coalesce(failed, F.lit(False)), why)
    return df.withColumn("reason", reason).withColumn("detail", detail)


def outcome_columns(classified: DataFrame) -> DataFrame:
    """What ``to_trades``, ``to_dead_letters`` and the accounting read, and no more: the raw payload
    only for rejected rows (a valid trade carries its values typed). Worth it when the classified
    rows are cached: the payload is most of a Bronze row."""
    return classified.select(
        "kafka_topic",
        "kafka_partition",
        "kafka_offset",
        "kafka_timestamp",
        "ingested_at",
        "item_index",
        "symbol",
        "exchange_symbol",
        "trade_id",
        "event_time",
        "price",
        "quantity",
        "taker_side",
        "reason",
        "detail",
        F.when(F.col("reason").isNotNull(), F.col("value")).alias("value"),
    )


def to_trades(classified: DataFrame, exchange: str, processed_at: Column) -> DataFrame:
    """Valid candidates as ``silver.trades`` rows (duplicates still included)."""
    return classified.where(F.col("reason").isNull()).select(
        F.lit(exchange).alias("exchange"),
        "symbol",
        "exchange_symbol",
        "trade_id",
        "event_time",
        F.col("price").cast(MONEY).alias("price"),
        F.col("quantity").cast(MONEY).alias("quantity"),
        quote_amount(F.col("price"), F.col("quantity")).alias("quote_amount"),
        "taker_side",
        "kafka_topic",
        "kafka_partition",
        "kafka_offset",
        "kafka_timestamp",
        F.col("ingested_at").alias("bronze_ingested_at"),
        processed_at.alias("processed_at"),
    )


def to_dead_letters(classified: DataFrame, exchange: str, detected_at: Column) -> DataFrame:
    """Rejected candidates as ``silver.dead_letter`` rows."""
    return classified.where(F.col("reason").isNotNull()).select(
        F.lit(exchange).alias("exchange"),
        "kafka_topic",
        "kafka_partition",
        "kafka_offset",
        "kafka_timestamp",
        "item_index",
        "reason",
        "detail",
        F.col("value").alias("raw_value"),
        F.col("ingested_at").alias("bronze_ingested_at"),
        detected_at.alias("detected_at"),
    )


def rank_copies(classified: DataFrame) -> DataFrame:
    """Adds ``copy``: 1 for the first valid candidate of each (symbol, trade_id) in Kafka order (so
    re-runs pick the same one), 2, 3, ... for later copies. Rejected candidates rank after the
    valid ones; their number means nothing."""
    order = Window.partitionBy("symbol", "trade_id").orderBy(
        F.col("reason").isNotNull(), "kafka_partition", "kafka_offset", "item_index"
    )
    return classified.withColumn("copy", F.row_number().over(order))
