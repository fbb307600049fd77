"""Each exchange's trade payload rules, declared once as data.

An exchange module declares a :class:`TradeRules`: where its trades sit in a message, each field's
documented JSON type and range, and how a trade's symbol, id, time, price, quantity and taker side
are read. Three compilers consume the same declaration, so the batch and the query can never
disagree on what a valid trade is:

- ``k2.exchanges.spark``: Spark expressions, for Silver (the batch);
- ``k2.exchanges.duckdb``: DuckDB SQL over the exchange's canonical layout, for the Kafka tail and
  unprocessed Bronze (``k2.query``), vectorised;
- ``k2.exchanges.tail``: plain Python, for the records the SQL leaves (any other JSON).

``tests/spark/test_rules_compilers.py`` feeds the same raw messages, good and bad, through all of
them and asserts identical candidates and dead-letter reasons. Pure data: no pyspark here.
"""

from __future__ import annotations

from dataclasses import dataclass

INT64_MAX = 2**63 - 1
# Epoch milliseconds a trade time may hold: 1970-01-01 up to 9999-12-31T23:59:59.999Z (Spark keeps
# timestamps as int64 microseconds; Silver's future/stale window rejects anything far out anyway)
MAX_EPOCH_MS = 253_402_300_799_999
# RFC 3339 date-time as exchanges send it (upper-case T and Z, optional fraction, or an offset)
RFC3339 = r"^[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}(\.[0-9]{1,9})?(Z|[+-][0-9]{2}:[0-9]{2})$"

# documented JSON type -> the JSON types (as Spark's schema_of_variant names them) a value may have;
# "DECIMAL" is any DECIMAL(p,s); BIGINT is a JSON integer within int64
ACCEPTED_TYPES = {
    "string": ("STRING",),
    "integer": ("BIGINT",),
    "number": ("BIGINT", "DECIMAL", "DOUBLE"),
    "boolean": ("BOOLEAN",),
}
# the JSON type a field of a canonical payload has
CANONICAL_TYPE = {"string": "STRING", "integer": "BIGINT", "number": "DECIMAL", "boolean": "BOOLEAN"}


@dataclass(frozen=True)
class FieldRule:
    """One field of a trade and its check: a present value of another JSON type, outside ``allowed``,
    outside [low, high] or (``as_time``) not a readable time rejects the trade with ``code`` (an
    out-of-range integer with ``range_code`` when set). A JSON null or an absent key passes here:
    Silver's missing_* rules judge those."""

    key: str  # the payload's key
    label: str  # what it is, for details
    kind: str  # documented JSON type: "string", "integer", "number" or "boolean"
    code: str
    expected: str = ""  # how a detail describes a good value (default: from the kind and range)
    allowed: tuple[str, ...] = ()  # the only texts accepted (strings)
    low: int | None = None  # integers: inclusive range
    high: int | None = None
    range_code: str | None = None
    as_time: bool = False  # the trade time: must convert (RFC 3339 text)

    @property
    def types(self) -> tuple[str, ...]:
        return ACCEPTED_TYPES[self.kind]

    @property
    def description(self) -> str:
        if self.expected:
            return self.expected
        if self.kind == "integer":
            return f"an integer from {self.low} to {self.high}"
        return {"string": "a string", "number": "a JSON number", "boolean": "true or false"}[self.kind]

    @property
    def prefix(self) -> str:
        named = self.key if self.label == self.key else f"{self.key} ({self.label})"
        return f"field {named} must be {self.description}, got "


def string(key: str, label: str, code: str, *allowed: str, expected: str = "", as_time: bool = False) -> FieldRule:
    return FieldRule(key, label, "string", code, expected, tuple(allowed), as_time=as_time)


def integer(key: str, label: str, code: str, low: int, high: int, range_code: str | None = None) -> FieldRule:
    return FieldRule(key, label, "integer", code, low=low, high=high, range_code=range_code)


def number(key: str, label: str, code: str) -> FieldRule:
    return FieldRule(key, label, "number", code)


def boolean(key: str, label: str, code: str) -> FieldRule:
    return FieldRule(key, label, "boolean", code)


@dataclass(frozen=True)
class TradeRules:
    """Where an exchange's trades are and how each is read.

    ``many``: the message's ``trades_key`` holds an array of trade objects (each judged on its own,
    item_index = its position; an element that is no object is ``invalid_trade_item``), else one
    trade object (item_index 0). ``tag`` is (key, value) that marks a trade message: a key of the
    trade object when not ``many``, of the message when ``many``. A message that is not JSON is
    ``malformed_json``, one without the tag ``not_a_trade``; with ``many``, a ``message_type`` value
    outside its ``allowed`` is ``invalid_message_type`` and an empty array ``no_trades``.
    """

    canonical: str  # regular expression: the exchange's own layout, whose types are known (fast path)
    many: bool
    tag: tuple[str, str]
    fields: tuple[FieldRule, ...]  # checked in this order; the first that fails rejects the trade
    symbol: str  # keys of the fields that make the trade
    trade_id: str
    price: str
    quantity: str
    time: str
    time_format: str  # "epoch_ms" (a JSON integer) or "rfc3339" (a string)
    side: str
    side_map: tuple[tuple[str, str], ...] = ()  # the field's text -> taker side; empty: the text is the side
    message_type: FieldRule | None = None
    trades_key: str = "data"

    def field(self, key: str) -> FieldRule:
        return next(f for f in self.fields if f.key == key)

    @property
    def payload_fields(self) -> dict[str, str]:
        """Candidate column -> the payload field it comes from (named in Silver's details)."""
        return {
            "exchange_symbol": self.symbol,
            "trade_id": self.trade_id,
            "event_time": self.time,
            "price_text": self.price,
            "quantity_text": self.quantity,
            "taker_side": self.side,
        }
