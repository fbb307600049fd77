"""Bronze candidates -> Silver trades and dead letters: the same validation for every exchange.

Input is what an exchange's ``parse_bronze`` yields (one row per trade found, see
``k2.exchanges.spark.CANDIDATE_COLUMNS``). Each candidate gets exactly one outcome: a ``reason``
(dead letter) or a typed trade. Spark 4 runs in ANSI mode, so every conversion of exchange text is
a ``try_`` conversion: bad input becomes a reason, never a failed job.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from pyspark.sql import Column, DataFrame, Window
from pyspark.sql import functions as F

from k2.lake.names import MONEY_SQL as MONEY

SIDES = ("buy", "sell")

# Bounds on one trade, so that Gold's sums of a bar can never overflow MONEY = DECIMAL(38,18), which
# holds 20 integer digits (< 1e20): price, quantity and quote amount are each below 1e12, so a bar's
# volume_base, volume_quote and taker volumes fit for up to 1e8 trades per symbol and bar, the 1-day
# bar included (the busiest spot pairs trade ~1e7 times a day). Real trades are far inside: BTC in
# IDR is ~1e9 a coin, meme-coin trades ~1e10 units. A trade past a bound cannot be aggregated exactly,
# so it is a dead letter, never a failed Silver or Gold job.
MAX_PRICE = 10**12
MAX_QUANTITY = 10**12
MAX_QUOTE_AMOUNT = 10**12


@dataclass(frozen=True)
class SilverRules:
    exchange: str
    symbols: dict[str, str]  # exchange symbol -> normalised symbol (BASE-QUOTE)
    max_event_lead_s: int = 300  # event time this far after the Kafka timestamp: clock error, reject
    max_event_age_s: int = 7 * 86_400  # event time this far before the Kafka timestamp: reject
    # candidate column -> the exchange's payload field, named in dead-letter details (Exchange.payload_fields)
    payload_fields: dict[str, str] = field(default_factory=dict)

    def name(self, column: str, word: str) -> str:
        """How details name a field: "price", or "price (field p)" when the payload's name is known."""
        payload = self.payload_fields.get(column)
        return f"{word} (field {payload})" if payload else word


def _text_to_money(text: str) -> Column:
    return F.col(text).try_cast(MONEY)


def quote_amount(price: Column, quantity: Column) -> Column:
    """price * quantity, exact for inputs of up to 8 decimals below 1e10 (16 fractional digits);
    larger inputs fall back to Spark's default decimal product (6 fractional digits). Null when the
    product does not fit MONEY (never fails: Spark 4 runs ANSI mode)."""
    narrow = F.try_multiply(price.try_cast("decimal(28,18)"), quantity.try_cast("decimal(29,18)"))
    # each branch becomes MONEY on its own: coalesce would otherwise widen to the coarser scale
    return F.coalesce(narrow.try_cast(MONEY), F.try_multiply(price, quantity).try_cast(MONEY))


def _beyond_money(text: str) -> Column:
    """A number too large for MONEY at all (its try_cast is null): out of range, not unreadable."""
    number = F.col(text).try_cast("double")
    return ~F.isnan(number) & (F.abs(number) >= 1e20)


def _shown(column: str) -> Column:
    """A value for a detail: its text, at most 100 characters, "nothing" when absent."""
    return F.coalesce(F.substring(F.col(column).cast("string"), 1, 100), F.lit("nothing"))


def classify(candidates: DataFrame, rules: SilverRules) -> DataFrame:
    """Adds typed columns and ``reason``/``detail`` (null for a valid trade). One row in, one row out.
    Each detail names the field and the value that failed."""
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
    symbol, trade_id = rules.name("exchange_symbol", "symbol"), rules.name("trade_id", "trade id")
    price, quantity = rules.name("price_text", "price"), rules.name("quantity_text", "quantity")
    side, event_time = rules.name("taker_side", "taker side"), rules.name("event_time", "trade time")
    quote = quote_amount(F.col("price"), F.col("quantity"))
    product = F.concat(F.lit(f"{price} x {quantity} = "), _shown("price_text"), F.lit(" x "), _shown("quantity_text"))
    lead = F.col("event_time") > F.col("kafka_timestamp") + F.expr(f"INTERVAL {rules.max_event_lead_s} SECONDS")
    age = F.col("event_time") < F.col("kafka_timestamp") - F.expr(f"INTERVAL {rules.max_event_age_s} SECONDS")
    checks: list[tuple[str, Column, Column]] = [
        ("missing_symbol", F.col("exchange_symbol").isNull(), F.lit(f"the trade has no {symbol}")),
        (
            "unknown_symbol",
            F.col("symbol").isNull(),
            F.concat(F.lit("symbol "), F.col("exchange_symbol"), F.lit(" is not configured for " + rules.exchange)),
        ),
        ("missing_trade_id", F.col("trade_id").isNull(), F.lit(f"the trade has no {trade_id}")),
        ("missing_price", F.col("price_text").isNull(), F.lit(f"the trade has no {price}")),
        (
            "invalid_price",
            F.col("price").isNull() & ~F.coalesce(_beyond_money("price_text"), F.lit(False)),
            F.concat(F.lit(f"{price} is not a decimal number: "), _shown("price_text")),
        ),
        (
            "non_positive_price",
            F.col("price") <= 0,
            F.concat(F.lit(f"{price} must be > 0, got "), _shown("price_text")),
        ),
        (
            "price_out_of_range",
            (F.col("price") >= MAX_PRICE) | (F.col("price").isNull() & _beyond_money("price_text")),
            F.concat(
                F.lit(f"{price} must be below {MAX_PRICE} (Gold's sums must fit DECIMAL(38,18)), got "),
                _shown("price_text"),
            ),
        ),
        ("missing_quantity", F.col("quantity_text").isNull(), F.lit(f"the trade has no {quantity}")),
        (
            "invalid_quantity",
            F.col("quantity").isNull() & ~F.coalesce(_beyond_money("quantity_text"), F.lit(False)),
            F.concat(F.lit(f"{quantity} is not a decimal number: "), _shown("quantity_text")),
        ),
        (
            "non_positive_quantity",
            F.col("quantity") <= 0,
            F.concat(F.lit(f"{quantity} must be > 0, got "), _shown("quantity_text")),
        ),
        (
            "quantity_out_of_range",
            (F.col("quantity") >= MAX_QUANTITY) | (F.col("quantity").isNull() & _beyond_money("quantity_text")),
            F.concat(
                F.lit(f"{quantity} must be below {MAX_QUANTITY} (Gold's sums must fit DECIMAL(38,18)), got "),
                _shown("quantity_text"),
            ),
        ),
        (
            "quote_amount_overflow",
            quote.isNull() | (quote >= MAX_QUOTE_AMOUNT),
            F.concat(product, F.lit(f" must be below {MAX_QUOTE_AMOUNT} (Gold's sums must fit DECIMAL(38,18))")),
        ),
        (
            "quote_amount_underflow",
            quote <= 0,
            F.concat(product, F.lit(" rounds to 0 in DECIMAL(38,18)")),
        ),
        (
            "invalid_side",
            ~F.coalesce(F.col("taker_side").isin(*SIDES), F.lit(False)),
            F.concat(F.lit(f"{side} is neither buy nor sell: "), _shown("taker_side")),
        ),
        (
            "invalid_timestamp",
            F.col("event_time").isNull(),
            F.lit(f"the {event_time} is missing or unreadable"),
        ),
        (
            "future_timestamp",
            lead,
            F.concat(
                F.lit(f"{event_time} "),
                F.col("event_time").cast("string"),
                F.lit(f" is over {rules.max_event_lead_s}s after its Kafka timestamp "),
                F.col("kafka_timestamp").cast("string"),
            ),
        ),
        (
            "stale_timestamp",
            age,
            F.concat(
                F.lit(f"{event_time} "),
                F.col("event_time").cast("string"),
                F.lit(f" is over {rules.max_event_age_s}s before its Kafka timestamp "),
                F.col("kafka_timestamp").cast("string"),
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
