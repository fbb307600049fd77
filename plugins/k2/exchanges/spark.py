"""Spark building blocks shared by the exchanges' ``parse_bronze`` implementations.

Imported only inside ``parse_bronze`` (pyspark is heavy and feed processes never need it).

Payload fields are read as VARIANT (``from_json`` into a map or array of VARIANT): one parse gives
each field's JSON type (a number is not a string, an integer is not a decimal) and its exact text (a
JSON number keeps every digit; read as STRING it would go through a double). Each exchange declares
its fields' documented types and ranges as :class:`Check`\\ s; the first that fails rejects the trade
(not its message: the other trades of a batch stand on their own) with a detail naming the field and
the offending value as it stood in the payload.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from dataclasses import dataclass

from pyspark.sql import Column, DataFrame
from pyspark.sql import functions as F

CANDIDATE_COLUMNS = (
    "kafka_topic",
    "kafka_partition",
    "kafka_offset",
    "kafka_timestamp",
    "ingested_at",
    "value",
    "item_index",
    "exchange_symbol",
    "trade_id",
    "event_time",
    "price_text",
    "quantity_text",
    "taker_side",
    "parse_error",
    "parse_detail",
)

# Epoch milliseconds a trade time may hold: 1970-01-01 up to 9999-12-31T23:59:59.999Z. Spark keeps
# timestamps as microseconds in a long: past ~9.2e15 ms the conversion overflows (ANSI mode fails
# the job), and Silver's future/stale window rejects anything far from the Kafka timestamp anyway.
MAX_EPOCH_MS = 253_402_300_799_999
INT64_MAX = 2**63 - 1
# RFC 3339 date-time as exchanges send it (upper-case T and Z, optional fraction, or an offset)
RFC3339 = r"^[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}(\.[0-9]{1,9})?(Z|[+-][0-9]{2}:[0-9]{2})$"


@dataclass(frozen=True)
class Check:
    """A rule on one trade: ``failed`` (null counts as passed) rejects it with ``code``; the detail is
    ``prefix`` followed by ``value`` (a VARIANT) as JSON, e.g. 'field t (trade id) must be ..., got "abc"'."""

    code: str
    failed: Column
    prefix: Column
    value: Column


class JsonField:
    """One field of a payload: its VARIANT (null when the key is absent) and JSON type, both columns
    of the frame ``read_fields`` returned. A JSON ``null`` counts as absent: Silver reports it as the
    missing field."""

    def __init__(self, value: Column, json_type: Column, name: str, label: str, long: Column | None = None) -> None:
        self.value, self.type, self.name, self.label = value, json_type, name, label
        self._long = long

    @property
    def present(self) -> Column:
        return self.type != "VOID"

    @property
    def text(self) -> Column:
        """The value as text: a string's content, a number's exact digits."""
        return F.try_variant_get(self.value, "$", "string")

    @property
    def long(self) -> Column:
        """The value of a JSON integer within int64, else null."""
        if self._long is not None:
            return self._long
        return F.when(self.type == "BIGINT", F.try_variant_get(self.value, "$", "bigint"))

    def must_be(self, code: str, expected: str, *types: str, also: Column | None = None) -> Check:
        """Rejects a present value whose JSON type is none of ``types`` ("DECIMAL": any DECIMAL(p,s);
        BIGINT is a JSON integer within int64) or that fails ``also``: "field <name> (<label>) must
        be <expected>, got <the value as JSON>". A JSON null or an absent key passes (it is missing)."""
        exact = [t for t in types if t != "DECIMAL"]
        typed = self.type.isin("VOID", *exact)
        if "DECIMAL" in types:
            typed = typed | self.type.startswith("DECIMAL")
        failed = ~typed if also is None else ~typed | (self.present & ~also)
        named = self.name if self.label == self.name else f"{self.name} ({self.label})"
        return Check(code, failed, F.lit(f"field {named} must be {expected}, got "), self.value)

    def integer_check(self, code: str, low: int, high: int, range_code: str | None = None) -> list[Check]:
        """A JSON integer in [low, high]: ``code`` when it is not an integer, ``range_code`` (or
        ``code``) when it is one out of range."""
        expected = f"an integer from {low} to {high}"
        in_range = self.long.between(low, high)
        if range_code is None:
            return [self.must_be(code, expected, "BIGINT", also=in_range)]
        typed = self.must_be(code, expected, "BIGINT")
        return [typed, Check(range_code, ~in_range, typed.prefix, self.value)]


def read_fields(
    df: DataFrame, fields: Sequence[tuple[str, str, Column]], integers: Collection[str] = ()
) -> tuple[DataFrame, list[JsonField]]:
    """Adds each field (name, label, its VARIANT in the row), its JSON type (STRING, BIGINT,
    DECIMAL(p,s), DOUBLE, BOOLEAN, VOID, OBJECT<...>, ...) and, for the ``integers``, its value as a
    long, as columns of their own. The checks refer to these several times, and Spark evaluates an
    expression anew in every CASE branch condition that refers to it; as columns (used more than
    once, so not inlined) they are computed once a row: the checks then cost a fraction of the
    parse, not several times it (measured: 2x the whole parse with the integer range checks inline)."""
    values = [value.alias(f"_field{i}") for i, (_, _, value) in enumerate(fields)]
    types = [F.schema_of_variant(f"_field{i}").alias(f"_type{i}") for i in range(len(fields))]
    longs = [
        F.when(F.col(f"_type{i}") == "BIGINT", F.try_variant_get(f"_field{i}", "$", "bigint")).alias(f"_long{i}")
        for i, (name, _, _) in enumerate(fields)
        if name in integers
    ]
    df = df.select("*", *values).select("*", *types).select("*", *longs)
    return df, [
        JsonField(
            F.col(f"_field{i}"),
            F.col(f"_type{i}"),
            name,
            label,
            F.col(f"_long{i}") if name in integers else None,
        )
        for i, (name, label, _) in enumerate(fields)
    ]


def epoch_ms_to_timestamp(field: JsonField) -> Column:
    """A JSON integer of epoch milliseconds as a timestamp, null unless within [0, MAX_EPOCH_MS]."""
    ms = field.long  # null unless a JSON integer
    return F.when(ms.between(0, MAX_EPOCH_MS), F.timestamp_millis(ms))


def rfc3339_to_timestamp(field: JsonField) -> Column:
    """A JSON string in RFC 3339 as a timestamp; null for anything else."""
    text = field.text
    return F.when((field.type == "STRING") & text.rlike(RFC3339), F.try_to_timestamp(text))


def payload_text(bronze: DataFrame) -> DataFrame:
    """Adds ``payload`` (the value as UTF-8 text) and ``payload_error`` for values that are empty or
    not UTF-8; exchanges add their own structural checks (see ``unparsed_reason``)."""
    text = F.col("value").cast("string")
    error = F.when(F.col("value").isNull() | (F.length("value") == 0), F.lit("empty_payload")).when(
        ~F.is_valid_utf8(text), F.lit("not_utf8")
    )
    return bronze.withColumn("payload", text).withColumn("payload_error", error)


def unparsed_reason() -> Column:
    """Why a payload did not parse into the exchange's message shape: not JSON at all, or JSON of
    another kind. Meant for rows whose parse failed only, so valid rows are parsed once."""
    return F.when(F.get_json_object("payload", "$").isNull(), F.lit("malformed_json")).otherwise(F.lit("not_a_trade"))


def candidates(
    df: DataFrame,
    *,
    item_index: Column,
    exchange_symbol: Column,
    trade_id: Column,
    event_time: Column,
    price_text: Column,
    quantity_text: Column,
    taker_side: Column,
    parse_error: Column,
    message_detail: Column | None = None,
    checks: Sequence[Check] = (),
) -> DataFrame:
    """Project onto CANDIDATE_COLUMNS. ``parse_error`` rejects the whole message (item_index -1, only
    its coordinates and raw value kept; ``message_detail`` explains codes of the exchange's own);
    otherwise the first failing ``checks`` rejects the one trade (its item_index kept).

    The message's verdict and the number of the first failing check are columns of their own, and
    the detail is looked up by that number: every condition is evaluated once a row, and the code
    Spark generates for each step stays small enough for the JIT (the JVM leaves methods over 8 KB
    of bytecode interpreted: measured, the checks in one projection doubled the parse's cost)."""
    df = df.withColumn("_message_error", parse_error)
    ok = F.col("_message_error").isNull()
    first = F.when(F.lit(False), F.lit(None).cast("int"))
    for i, check in enumerate(checks):
        first = first.when(check.failed, F.lit(i))  # a null condition counts as false
    df = df.withColumn("_check", F.when(ok, first))
    message_error = F.col("_message_error")
    detail = (
        F.when(message_error == "empty_payload", F.lit("the Kafka record has no value"))
        .when(message_error == "not_utf8", F.lit("the payload is not valid UTF-8"))
        .when(message_error == "malformed_json", F.lit("the payload is not valid JSON (truncated or garbled)"))
    )
    if message_detail is not None:
        detail = detail.when(message_error.isNotNull() & message_detail.isNotNull(), message_detail)
    detail = detail.when(
        message_error.isNotNull(), F.concat(F.lit("not a trade message: "), F.substring("payload", 1, 200))
    )
    error = F.when(~ok, message_error)
    if checks:
        # guarded: Spark 4.1's element_at of a literal array at a null index gives the last element
        failed, number = F.col("_check").isNotNull(), F.col("_check") + 1
        error = error.when(failed, F.element_at(F.array(*[F.lit(c.code) for c in checks]), number))
        got = F.to_json(F.element_at(F.array(*[c.value for c in checks]), number))
        pick = F.element_at(F.array(*[c.prefix for c in checks]), number)
        detail = detail.when(failed, F.concat(pick, F.substring(got, 1, 100)))
    return df.select(
        "kafka_topic",
        "kafka_partition",
        "kafka_offset",
        "kafka_timestamp",
        "ingested_at",
        "value",
        F.when(ok, item_index).otherwise(F.lit(-1)).cast("int").alias("item_index"),
        F.when(ok, exchange_symbol).alias("exchange_symbol"),
        F.when(ok, trade_id.cast("string")).alias("trade_id"),
        F.when(ok, event_time).alias("event_time"),
        F.when(ok, price_text).alias("price_text"),
        F.when(ok, quantity_text).alias("quantity_text"),
        F.when(ok, taker_side).alias("taker_side"),
        error.alias("parse_error"),
        detail.alias("parse_detail"),
    )
