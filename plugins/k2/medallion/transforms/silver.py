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


@dataclass(frozen=True)
class _Rule:
    """A check of ``classify``: the detail is ``prefix`` + the text of ``value`` ("nothing" when it
    is null; no value: the prefix alone) + ``suffix``."""

    code: str
    failed: Column
    prefix: str
    value: Column | None = None
    suffix: str = ""


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
    ).withColumn("_quote", quote_amount(F.col("price"), F.col("quantity")))
    symbol, trade_id = rules.name("exchange_symbol", "symbol"), rules.name("trade_id", "trade id")
    price, quantity = rules.name("price_text", "price"), rules.name("quantity_text", "quantity")
    side, event_time = rules.name("taker_side", "taker side"), rules.name("event_time", "trade time")
    price_text, quantity_text, quote = F.col("price_text"), F.col("quantity_text"), F.col("_quote")
    product = F.concat(price_text, F.lit(" x "), quantity_text)
    bound = "(Gold's sums must fit DECIMAL(38,18))"
    lead, age = rules.max_event_lead_s, rules.max_event_age_s
    late = F.col("event_time") > F.col("kafka_timestamp") + F.expr(f"INTERVAL {lead} SECONDS")
    early = F.col("event_time") < F.col("kafka_timestamp") - F.expr(f"INTERVAL {age} SECONDS")

    def times(relation: str) -> Column:
        return F.concat(
            F.col("event_time").cast("string"), F.lit(f" is {relation} "), F.col("kafka_timestamp").cast("string")
        )

    checks = [
        _Rule("missing_symbol", F.col("exchange_symbol").isNull(), f"the trade has no {symbol}"),
        _Rule(
            "unknown_symbol",
            F.col("symbol").isNull(),
            "symbol ",
            F.col("exchange_symbol"),
            f" is not configured for {rules.exchange}",
        ),
        _Rule("missing_trade_id", F.col("trade_id").isNull(), f"the trade has no {trade_id}"),
        _Rule("missing_price", price_text.isNull(), f"the trade has no {price}"),
        _Rule(
            "invalid_price",
            F.col("price").isNull() & ~F.coalesce(_beyond_money("price_text"), F.lit(False)),
            f"{price} is not a decimal number: ",
            price_text,
        ),
        _Rule("non_positive_price", F.col("price") <= 0, f"{price} must be > 0, got ", price_text),
        _Rule(
            "price_out_of_range",
            (F.col("price") >= MAX_PRICE) | (F.col("price").isNull() & _beyond_money("price_text")),
            f"{price} must be below {MAX_PRICE} {bound}, got ",
            price_text,
        ),
        _Rule("missing_quantity", quantity_text.isNull(), f"the trade has no {quantity}"),
        _Rule(
            "invalid_quantity",
            F.col("quantity").isNull() & ~F.coalesce(_beyond_money("quantity_text"), F.lit(False)),
            f"{quantity} is not a decimal number: ",
            quantity_text,
        ),
        _Rule("non_positive_quantity", F.col("quantity") <= 0, f"{quantity} must be > 0, got ", quantity_text),
        _Rule(
            "quantity_out_of_range",
            (F.col("quantity") >= MAX_QUANTITY) | (F.col("quantity").isNull() & _beyond_money("quantity_text")),
            f"{quantity} must be below {MAX_QUANTITY} {bound}, got ",
            quantity_text,
        ),
        _Rule(
            "quote_amount_overflow",
            quote.isNull() | (quote >= MAX_QUOTE_AMOUNT),
            f"{price} x {quantity} = ",
            product,
            f" must be below {MAX_QUOTE_AMOUNT} {bound}",
        ),
        _Rule(
            "quote_amount_underflow", quote <= 0, f"{price} x {quantity} = ", product, " rounds to 0 in DECIMAL(38,18)"
        ),
        _Rule(
            "invalid_side",
            ~F.coalesce(F.col("taker_side").isin(*SIDES), F.lit(False)),
            f"{side} is neither buy nor sell: ",
            F.col("taker_side"),
        ),
        _Rule("invalid_timestamp", F.col("event_time").isNull(), f"the {event_time} is missing or unreadable"),
        _Rule("future_timestamp", late, f"{event_time} ", times(f"over {lead}s after its Kafka timestamp")),
        _Rule("stale_timestamp", early, f"{event_time} ", times(f"over {age}s before its Kafka timestamp")),
    ]
    # The number of the first failing check (1: the exchange's parse_error) is a column of its own,
    # and reason and detail are looked up by it in arrays: each condition runs once a row, and the
    # code Spark generates stays small enough for the JIT (the JVM leaves methods over 8 KB of
    # bytecode interpreted: measured, checks and details as two CASE chains tripled classify's cost).
    first = F.when(F.col("parse_error").isNotNull(), F.lit(1))
    for number, rule in enumerate(checks, start=2):
        first = first.when(rule.failed, F.lit(number))  # a null condition counts as false
    df = df.withColumn("_check", first)
    number = F.col("_check")

    def pick(values: list[Column]) -> Column:
        return F.element_at(F.array(F.lit(None).cast("string"), *values), number)

    value = pick(
        [
            F.coalesce(F.substring(r.value, 1, 100), F.lit("nothing")) if r.value is not None else F.lit("")
            for r in checks
        ]
    )
    detail = F.concat(pick([F.lit(r.prefix) for r in checks]), value, pick([F.lit(r.suffix) for r in checks]))
    # guarded: Spark 4.1's element_at of a literal array at a null index gives the last element
    return (
        df.withColumn(
            "reason",
            F.when(number == 1, F.col("parse_error")).when(number.isNotNull(), pick([F.lit(r.code) for r in checks])),
        )
        .withColumn("detail", F.when(number == 1, F.col("parse_detail")).when(number.isNotNull(), detail))
        .drop("_check", "_quote")
    )


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
