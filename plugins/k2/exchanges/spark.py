"""Spark building blocks shared by the exchanges' ``parse_bronze`` implementations.

Imported only inside ``parse_bronze`` (pyspark is heavy and feed processes never need it).

Every field of a payload is checked against its documented JSON type and range. Two paths, one
outcome:

- Fast: a payload in the exchange's own canonical layout (its keys in its order, no whitespace,
  each value of its documented type: the exchange's ``CANONICAL`` regular expression) is read with
  ``from_json`` into STRING values, which are then exact. Its types are known from the match.
- Slow, every other payload: ``from_json`` into VARIANT, which gives each field's JSON type (a
  number is not a string, an integer is not a decimal) and exact text (a JSON number keeps every
  digit). Only payloads that are not canonical pay for it (measured: the VARIANT parse of every
  payload cost 1.5x the STRING parse).

Each exchange declares its fields' types and ranges as checks (:class:`Check`), the same on both
paths (canonical payloads may skip them: their types and ranges are known); the first that fails
rejects the trade (not its message: the other trades of a batch stand on their own) with a detail
naming the field and the offending value as it stood in the payload.
"""

from __future__ import annotations

from collections.abc import Sequence
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
    ``prefix`` then ``got`` (the value as JSON text): 'field t (trade id) must be ..., got "abc"'."""

    code: str
    failed: Column
    prefix: Column
    got: Column


@dataclass(frozen=True)
class FieldSource:
    """Where one payload field comes from on each path."""

    name: str  # the payload's key
    label: str  # what it is, for details
    kind: str  # documented JSON type: "string", "integer", "number" or "boolean"
    text: Column  # fast path: the value from the STRING parse
    variant: Column  # slow path: the value as VARIANT (null when the key is absent)


# the JSON type a canonical payload's field has (as ``schema_of_variant`` names it)
_CANONICAL_TYPE = {"string": "STRING", "integer": "BIGINT", "number": "DECIMAL", "boolean": "BOOLEAN"}


class JsonField:
    """One field of a payload, as columns of the frame ``read_fields`` returned: its JSON type
    (STRING, BIGINT, DECIMAL(p,s), DOUBLE, BOOLEAN, VOID for a JSON null, OBJECT<...>, ...; null when
    the key is absent), its text, its value as JSON (for details) and, for integers, its value."""

    def __init__(self, source: FieldSource, json_type: Column, text: Column, got: Column, long: Column | None):
        self.name, self.label = source.name, source.label
        self.type, self.text, self.got, self._long = json_type, text, got, long

    @property
    def present(self) -> Column:
        return self.type != "VOID"

    @property
    def long(self) -> Column:
        """The value of a JSON integer within int64, else null."""
        if self._long is None:
            raise ValueError(f"field {self.name} was not read as an integer")
        return self._long

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
        return Check(code, failed, F.lit(f"field {named} must be {expected}, got "), self.got)

    def integer_check(self, code: str, low: int, high: int, range_code: str | None = None) -> list[Check]:
        """A JSON integer in [low, high]: ``code`` when it is not an integer, ``range_code`` (or
        ``code``) when it is one out of range."""
        expected = f"an integer from {low} to {high}"
        in_range = self.long.between(low, high)
        if range_code is None:
            return [self.must_be(code, expected, "BIGINT", also=in_range)]
        typed = self.must_be(code, expected, "BIGINT")
        return [typed, Check(range_code, ~in_range, typed.prefix, self.got)]


def read_fields(df: DataFrame, fast: Column, sources: Sequence[FieldSource]) -> tuple[DataFrame, list[JsonField]]:
    """Adds each field's JSON type, text and (integers) value as columns of their own, from the STRING
    parse where ``fast`` (a column: the payload is canonical, so its types are known) and from the
    VARIANT parse elsewhere. As columns (used more than once, so not inlined) they are computed once
    a row: Spark evaluates an expression anew in every CASE branch condition that refers to it."""
    df = df.select("*", *[F.when(~fast, s.variant).alias(f"_field{i}") for i, s in enumerate(sources)])
    columns = []
    for i, s in enumerate(sources):
        variant = F.col(f"_field{i}")
        columns.append(
            F.when(fast, F.lit(_CANONICAL_TYPE[s.kind])).otherwise(F.schema_of_variant(variant)).alias(f"_type{i}")
        )
        columns.append(F.when(fast, s.text).otherwise(F.try_variant_get(variant, "$", "string")).alias(f"_text{i}"))
    df = df.select("*", *columns)
    longs = [
        F.when(
            F.col(f"_type{i}") == "BIGINT",
            F.when(fast, s.text.try_cast("bigint")).otherwise(F.try_variant_get(f"_field{i}", "$", "bigint")),
        ).alias(f"_long{i}")
        for i, s in enumerate(sources)
        if s.kind == "integer"
    ]
    df = df.select("*", *longs)
    fields = []
    for i, s in enumerate(sources):
        text = F.col(f"_text{i}")
        # the value as JSON, for details (evaluated for rejected trades only): a canonical payload's
        # strings hold no quote or backslash, its numbers and booleans are their text
        fast_json = F.concat(F.lit('"'), text, F.lit('"')) if s.kind == "string" else text
        got = F.when(fast, fast_json).otherwise(F.to_json(F.col(f"_field{i}")))
        long = F.col(f"_long{i}") if s.kind == "integer" else None
        fields.append(JsonField(s, F.col(f"_type{i}"), text, got, long))
    return df, fields


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
    checked: Column | None = None,
) -> DataFrame:
    """Project onto CANDIDATE_COLUMNS. ``parse_error`` rejects the whole message (item_index -1, only
    its coordinates and raw value kept; ``message_detail`` explains codes of the exchange's own);
    otherwise the first failing ``checks`` rejects the one trade (its item_index kept). ``checked``
    (default: all) says which trades the checks may reject: a canonical payload's types and ranges
    are known, so its trades skip the checks altogether (a dozen conditions a trade, on the hot path).

    The message's verdict and the number of the first failing check are columns of their own, and
    the detail is looked up by that number: every condition is evaluated once a row, and the code
    Spark generates for each step stays small enough for the JIT (the JVM leaves methods over 8 KB
    of bytecode interpreted: measured, the checks in one projection doubled the parse's cost)."""
    df = df.withColumn("_message_error", parse_error)
    ok = F.col("_message_error").isNull()
    first = F.when(F.lit(False), F.lit(None).cast("int"))
    for i, check in enumerate(checks):
        first = first.when(check.failed, F.lit(i))  # a null condition counts as false
    df = df.withColumn("_check", F.when(ok if checked is None else ok & checked, first))
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
        got = F.element_at(F.array(*[c.got for c in checks]), number)
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
