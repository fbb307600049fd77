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

from k2.exchanges.rules import CANONICAL_TYPE, MAX_EPOCH_MS, RFC3339, FieldRule, TradeRules

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
            F.when(fast, F.lit(CANONICAL_TYPE[s.kind])).otherwise(F.schema_of_variant(variant)).alias(f"_type{i}")
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


# --- the compiler: an exchange's declared TradeRules -> Spark expressions ------------------------------
def _field_checks(rule: FieldRule, field: JsonField, event_time: Column | None) -> list[Check]:
    """The checks ``rule`` declares, on the field as ``read_fields`` read it."""
    if rule.kind == "integer":
        return field.integer_check(rule.code, rule.low, rule.high, rule.range_code)
    also = None
    if rule.allowed:
        also = field.text.isin(*rule.allowed)
    if rule.as_time:
        also = event_time.isNotNull()
    return [field.must_be(rule.code, rule.description, *rule.types, also=also)]


def _taker_side(rules: TradeRules, field: JsonField) -> Column:
    if not rules.side_map:
        return field.text
    kind = CANONICAL_TYPE[rules.field(rules.side).kind]
    mapped = F.create_map(*[F.lit(x) for pair in rules.side_map for x in pair])
    return F.when(field.type == kind, mapped[field.text])


def parse_bronze(rules: TradeRules, bronze: DataFrame) -> DataFrame:
    """Bronze rows -> candidates (CANDIDATE_COLUMNS), by an exchange's declared rules (no UDFs).

    The STRING parse renames the keys to f0, f1, ... by position at once: keys that differ only in
    case (Binance's "t" id and "T" time) are told apart by the JSON parser, not by Spark's column
    resolution."""
    keys = [f.key for f in rules.fields]
    strings = ", ".join(f"`{k}`: STRING" for k in keys)
    renamed = ", ".join(f"f{i}: string" for i in range(len(keys)))
    df = payload_text(bronze).withColumn("_fast", F.col("payload").rlike(rules.canonical))
    fast = F.col("_fast")
    tag_key, tag_value = rules.tag
    if rules.many:
        type_key = rules.message_type.key if rules.message_type else "_no_type"
        head = f"`{tag_key}` STRING, `{type_key}` STRING"
        item = f"STRUCT<{strings}>"
        df = df.withColumn(
            "msg",
            F.when(fast, F.from_json("payload", f"{head}, `{rules.trades_key}` ARRAY<{item}>")).cast(
                f"struct<tag: string, type: string, data: array<struct<{renamed}>>>"
            ),
        )
        typed = F.from_json("payload", f"{head}, `{rules.trades_key}` ARRAY<VARIANT>").cast(
            "struct<tag: string, type: string, data: array<variant>>"
        )
        df = df.withColumn("_typed", F.when(~fast, typed))

        def either(name: str) -> Column:
            return F.when(fast, F.col(f"msg.{name}")).otherwise(F.col(f"_typed.{name}"))

        tag, kind = either("tag"), either("type")
        parsed = F.when(fast, F.col("msg").isNotNull()).otherwise(F.col("_typed").isNotNull())
        no_array = F.when(fast, F.col("msg.data").isNull()).otherwise(F.col("_typed.data").isNull())
        trades = F.when(fast, F.size("msg.data")).otherwise(F.size("_typed.data"))
        error = F.coalesce(
            F.col("payload_error"),
            F.when(~parsed | tag.isNull(), unparsed_reason()),
            F.when((tag != tag_value) | no_array, F.lit("not_a_trade")),
        )
        message_detail = F.lit(None).cast("string")
        if rules.message_type is not None:
            mt = rules.message_type
            error = F.coalesce(error, F.when(~F.coalesce(kind.isin(*mt.allowed), F.lit(False)), F.lit(mt.code)))
            message_detail = F.when(
                error == mt.code,
                F.concat(F.lit(mt.prefix), F.coalesce(F.substring(kind, 1, 100), F.lit("nothing"))),
            )
        error = F.coalesce(error, F.when(trades == 0, F.lit("no_trades")))
        df = df.withColumn("parse_error", error).withColumn("message_detail", message_detail)
        # one row per element: the element itself where fast, its position in the VARIANT array
        # elsewhere; a rejected message still yields one row (item_index -1) for the dead letters
        nothing = F.lit(None).cast(f"struct<{renamed}>")
        items = (
            F.when(F.col("parse_error").isNotNull(), F.array(nothing))
            .when(fast, F.col("msg.data"))
            .otherwise(F.array_repeat(nothing, F.size("_typed.data")))
        )
        df = df.select("*", F.posexplode(items).alias("pos", "item"))
        element = F.element_at(F.col("_typed.data"), F.col("pos") + 1)
        df = df.withColumn("trade", F.when(F.col("parse_error").isNull() & ~fast, element))
        sources = [
            FieldSource(k, f.label, f.kind, F.col(f"item.f{i}"), F.try_variant_get("trade", f"$.{k}", "variant"))
            for i, (k, f) in enumerate(zip(keys, rules.fields, strict=True))
        ]
        item_index, message_error = F.col("pos"), F.col("parse_error")
    else:
        schema = f"`{rules.trades_key}` STRUCT<`{tag_key}`: STRING, {strings}>"
        df = df.withColumn(
            "msg",
            F.from_json("payload", schema).getField(rules.trades_key).cast(f"struct<tag: string, {renamed}>"),
        )
        typed = F.from_json("payload", f"`{rules.trades_key}` MAP<STRING, VARIANT>").getField(rules.trades_key)
        df = df.withColumn("_typed", F.when(~fast, typed))
        sources = [
            FieldSource(k, f.label, f.kind, F.col(f"msg.f{i}"), F.col("_typed").getItem(k))
            for i, (k, f) in enumerate(zip(keys, rules.fields, strict=True))
        ]
        # only a JSON string has the text of the tag's value
        message_error = F.coalesce(
            F.col("payload_error"),
            F.when(F.col("msg").isNull(), unparsed_reason()),
            F.when(F.coalesce(F.col("msg.tag"), F.lit("")) != tag_value, F.lit("not_a_trade")),
        )
        message_detail, item_index = None, F.lit(0)
    df, fields = read_fields(df, fast, sources)
    by_key = dict(zip(keys, fields, strict=True))
    time = by_key[rules.time]
    if rules.time_format == "epoch_ms":
        event_time = epoch_ms_to_timestamp(time)
    else:
        # a column of its own: the checks and the output refer to it (parsed once a row, not thrice)
        df = df.withColumn("_event_time", rfc3339_to_timestamp(time))
        event_time = F.col("_event_time")
    checks: list[Check] = []
    if rules.many:
        # an element without the symbol may be no object at all: its type is looked up for those only
        symbol = by_key[rules.symbol]
        checks.append(
            Check(
                "invalid_trade_item",
                symbol.type.isNull() & ~F.schema_of_variant("trade").startswith("OBJECT"),
                F.concat(
                    F.lit(f"{rules.trades_key}["), F.col("pos").cast("string"), F.lit("] is not a trade object: ")
                ),
                F.to_json("trade"),
            )
        )
    for rule, field in zip(rules.fields, fields, strict=True):
        checks += _field_checks(rule, field, event_time)
    return candidates(
        df,
        item_index=item_index,
        exchange_symbol=by_key[rules.symbol].text,
        trade_id=by_key[rules.trade_id].text,
        event_time=event_time,
        price_text=by_key[rules.price].text,
        quantity_text=by_key[rules.quantity].text,
        taker_side=_taker_side(rules, by_key[rules.side]),
        parse_error=message_error,
        message_detail=message_detail,
        checks=checks,
        # the exchange's own layout has every type and range right; only a time may not be a date
        checked=~fast | event_time.isNull(),
    )
