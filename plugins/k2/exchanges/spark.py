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
    """A rule on one trade: ``failed`` (null counts as passed) rejects it with ``code`` and ``detail``."""

    code: str
    failed: Column
    detail: Column


class JsonField:
    """One field of a payload, held as VARIANT (null when the key is absent). A JSON ``null`` counts
    as absent: Silver reports it as the missing field."""

    def __init__(self, value: Column, name: str, label: str) -> None:
        self.value, self.name, self.label = value, name, label
        self.type = F.schema_of_variant(value)  # STRING, BIGINT, DECIMAL(p,s), DOUBLE, BOOLEAN, VOID, OBJECT<...>

    @property
    def present(self) -> Column:
        return self.type != "VOID"

    @property
    def text(self) -> Column:
        """The value as text: a string's content, a number's exact digits."""
        return F.try_variant_get(self.value, "$", "string")

    @property
    def long(self) -> Column:
        return F.try_variant_get(self.value, "$", "bigint")

    @property
    def is_string(self) -> Column:
        return self.type == "STRING"

    @property
    def is_integer(self) -> Column:
        """A JSON integer within int64 (larger ones are DECIMAL(n,0) or DOUBLE in a VARIANT)."""
        return self.type == "BIGINT"

    @property
    def is_number(self) -> Column:
        return self.is_integer | (self.type == "DOUBLE") | self.type.startswith("DECIMAL")

    @property
    def is_boolean(self) -> Column:
        return self.type == "BOOLEAN"

    def check(self, code: str, ok: Column, expected: str) -> Check:
        """Rejects a present value that is not ``ok``: "field <name> (<label>) must be <expected>,
        got <the value as JSON>"."""
        got = F.substring(F.to_json(self.value), 1, 100)
        named = self.name if self.label == self.name else f"{self.name} ({self.label})"
        detail = F.concat(F.lit(f"field {named} must be {expected}, got "), got)
        return Check(code, self.present & ~ok, detail)

    def integer_check(self, code: str, low: int, high: int, range_code: str | None = None) -> list[Check]:
        """A JSON integer in [low, high]: ``code`` when it is not an integer, ``range_code`` (or
        ``code``) when it is one out of range."""
        expected = f"an integer from {low} to {high}"
        in_range = self.long.between(low, high)
        if range_code is None:
            return [self.check(code, self.is_integer & in_range, expected)]
        return [self.check(code, self.is_integer, expected), self.check(range_code, in_range, expected)]


def epoch_ms_to_timestamp(field: JsonField) -> Column:
    """A JSON integer of epoch milliseconds as a timestamp, null unless within [0, MAX_EPOCH_MS]."""
    ms = field.long
    return F.when(field.is_integer & ms.between(0, MAX_EPOCH_MS), F.timestamp_millis(ms))


def rfc3339_to_timestamp(field: JsonField) -> Column:
    """A JSON string in RFC 3339 as a timestamp; null for anything else."""
    text = field.text
    return F.when(field.is_string & text.rlike(RFC3339), F.try_to_timestamp(text))


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
    otherwise the first failing ``checks`` rejects the one trade (its item_index kept)."""
    ok = parse_error.isNull()
    detail = (
        F.when(parse_error == "empty_payload", F.lit("the Kafka record has no value"))
        .when(parse_error == "not_utf8", F.lit("the payload is not valid UTF-8"))
        .when(parse_error == "malformed_json", F.lit("the payload is not valid JSON (truncated or garbled)"))
    )
    if message_detail is not None:
        detail = detail.when(parse_error.isNotNull() & message_detail.isNotNull(), message_detail)
    detail = detail.when(
        parse_error.isNotNull(), F.concat(F.lit("not a trade message: "), F.substring("payload", 1, 200))
    )
    error = F.when(~ok, parse_error)
    for check in checks:
        error = error.when(F.coalesce(check.failed, F.lit(False)), F.lit(check.code))
        detail = detail.when(F.coalesce(check.failed, F.lit(False)), check.detail)
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
