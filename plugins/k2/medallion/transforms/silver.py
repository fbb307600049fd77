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
from k2.medallion.rules import (
    CHECKS,
    MAX_PRICE,
    MAX_QUANTITY,
    MAX_QUOTE_AMOUNT,
    SIDES,
    TESTS,
    SilverCheck,
    names,
    time_relation,
)

# re-exported: Silver's bounds and checks are declared in k2.medallion.rules (shared with the tail)
__all__ = ["MAX_PRICE", "MAX_QUANTITY", "MAX_QUOTE_AMOUNT", "SIDES", "SilverRules", "classify"]


@dataclass(frozen=True)
class SilverRules:
    """What Silver's checks need to know of one exchange and the settings."""

    exchange: str
    symbols: dict[str, str]  # exchange symbol -> normalised symbol (BASE-QUOTE)
    max_event_lead_s: int = 300  # event time this far after the Kafka timestamp: clock error, reject
    max_event_age_s: int = 7 * 86_400  # event time this far before the Kafka timestamp: reject
    # candidate column -> the exchange's payload field, named in dead-letter details (Exchange.payload_fields)
    payload_fields: dict[str, str] = field(default_factory=dict)


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


def _condition(check: SilverCheck, lead: int, age: int) -> Column:
    """The Spark form of each test k2.medallion.rules names (null counts as passed)."""
    col, number = F.col(check.column) if check.column else None, check.column.replace("_text", "")
    quote = F.col("_quote")
    if check.test == "missing":
        return col.isNull()
    if check.test == "unknown_symbol":
        return F.col("symbol").isNull()
    if check.test == "not_decimal":
        return F.col(number).isNull() & ~F.coalesce(_beyond_money(check.column), F.lit(False))
    if check.test == "not_positive":
        return F.col(number) <= 0
    if check.test == "at_or_above":
        return (F.col(number) >= check.bound) | (F.col(number).isNull() & _beyond_money(check.column))
    if check.test == "quote_at_or_above":
        return quote.isNull() | (quote >= check.bound)
    if check.test == "quote_not_positive":
        return quote <= 0
    if check.test == "not_side":
        return ~F.coalesce(col.isin(*SIDES), F.lit(False))
    if check.test == "after_kafka":
        return col > F.col("kafka_timestamp") + F.expr(f"INTERVAL {lead} SECONDS")
    if check.test == "before_kafka":
        return col < F.col("kafka_timestamp") - F.expr(f"INTERVAL {age} SECONDS")
    raise ValueError(f"no Spark form for Silver test {check.test!r}")


_SPARK_TESTS = frozenset(
    {"missing", "unknown_symbol", "not_decimal", "not_positive", "at_or_above", "quote_at_or_above"}
    | {"quote_not_positive", "not_side", "after_kafka", "before_kafka"}
)
if TESTS - _SPARK_TESTS:  # a test declared in k2.medallion.rules that this compiler does not know
    raise ImportError(f"Silver tests without a Spark form: {sorted(TESTS - _SPARK_TESTS)}")


def _shown(check: SilverCheck, lead: int, age: int) -> Column:
    """What the detail shows between prefix and suffix."""
    if not check.shows:
        return F.lit("")
    if check.shows == "product":
        value = F.concat(F.col("price_text"), F.lit(" x "), F.col("quantity_text"))
    elif check.shows in ("after", "before"):
        words = F.lit(time_relation(check.shows, lead, age))
        value = F.concat(F.col("event_time").cast("string"), words, F.col("kafka_timestamp").cast("string"))
    else:
        value = F.col(check.shows)
    return F.coalesce(F.substring(value, 1, 100), F.lit("nothing"))


def classify(candidates: DataFrame, rules: SilverRules) -> DataFrame:
    """Adds typed columns and ``reason``/``detail`` (null for a valid trade), by the checks
    k2.medallion.rules declares. One row in, one row out. Each detail names the field and the value
    that failed."""
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
    words = names(rules.exchange, rules.payload_fields)
    lead, age = rules.max_event_lead_s, rules.max_event_age_s
    # The number of the first failing check (1: the exchange's parse_error) is a column of its own,
    # and reason and detail are looked up by it in arrays: each condition runs once a row, and the
    # code Spark generates stays small enough for the JIT (the JVM leaves methods over 8 KB of
    # bytecode interpreted: measured, checks and details as two CASE chains tripled classify's cost).
    first = F.when(F.col("parse_error").isNotNull(), F.lit(1))
    for number, check in enumerate(CHECKS, start=2):
        first = first.when(_condition(check, lead, age), F.lit(number))  # a null condition counts as false
    df = df.withColumn("_check", first)
    number = F.col("_check")

    def pick(values: list[Column]) -> Column:
        return F.element_at(F.array(F.lit(None).cast("string"), *values), number)

    detail = F.concat(
        pick([F.lit(c.prefix.format(**words)) for c in CHECKS]),
        pick([_shown(c, lead, age) for c in CHECKS]),
        pick([F.lit(c.suffix.format(**words)) for c in CHECKS]),
    )
    # guarded: Spark 4.1's element_at of a literal array at a null index gives the last element
    return (
        df.withColumn(
            "reason",
            F.when(number == 1, F.col("parse_error")).when(number.isNotNull(), pick([F.lit(c.code) for c in CHECKS])),
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
