"""A compiler of an exchange's declared rules (``k2.exchanges.rules``): plain Python, for the records
``k2.query`` reads (the Kafka tail, Bronze rows Silver has not processed yet) that the SQL compiler
``k2.exchanges.duckdb`` leaves: anything not in the exchange's canonical layout.

It yields exactly the candidates ``k2.exchanges.spark`` does (same columns, values, reasons and
details): JSON values are typed as Spark's VARIANT types them (an integer within int64 is BIGINT, a
plain decimal of up to 38 digits DECIMAL, anything else numeric DOUBLE), with their exact text.
"""

from __future__ import annotations

import datetime as dt
import functools
import json
import re
from decimal import Decimal
from typing import Any

from k2.exchanges.rules import CANONICAL_TYPE, MAX_EPOCH_MS, RFC3339, FieldRule, TradeRules

UTC = dt.UTC
EPOCH = dt.datetime(1970, 1, 1, tzinfo=UTC)
_RFC3339 = re.compile(RFC3339)
_PARTS = re.compile(r"^(\d{4})-(\d{2})-(\d{2})T(\d{2}):(\d{2}):(\d{2})(?:\.(\d{1,9}))?(Z|[+-]\d{2}:\d{2})$")
MESSAGE_DETAILS = {
    "empty_payload": "the Kafka record has no value",
    "not_utf8": "the payload is not valid UTF-8",
    "malformed_json": "the payload is not valid JSON (truncated or garbled)",
}


class Number(str):
    """A JSON number, kept as its literal text."""


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def loads(text: str) -> Any:
    return json.loads(text, parse_int=Number, parse_float=Number, parse_constant=_no_constant)


def java_double(x: float) -> str:
    """Java's Double.toString (how Spark writes a double as text)."""
    if x != x:
        return "NaN"
    if x in (float("inf"), float("-inf")):
        return "Infinity" if x > 0 else "-Infinity"
    if x == 0:
        return "-0.0" if str(x).startswith("-") else "0.0"
    if 1e-3 <= abs(x) < 1e7:
        text = repr(x)
        return text if "." in text else f"{text}.0"
    sign, digits, exponent = Decimal(repr(x)).as_tuple()
    mantissa = "".join(map(str, digits)).rstrip("0") or "0"
    power = len(digits) - 1 + exponent
    return f"{'-' if sign else ''}{mantissa[0]}.{mantissa[1:] or '0'}E{power}"


def json_type(value: Any) -> str:
    """The type Spark's schema_of_variant gives a parsed JSON value (DECIMAL without its (p,s))."""
    if value is None:
        return "VOID"
    if isinstance(value, bool):
        return "BOOLEAN"
    if isinstance(value, Number):
        if "." not in value and "e" not in value and "E" not in value:
            if -(2**63) <= int(value) < 2**63:
                return "BIGINT"
            return "DECIMAL" if len(value.lstrip("-")) <= 38 else "DOUBLE"
        if "e" in value or "E" in value:
            return "DOUBLE"
        _, digits, exponent = Decimal(value).as_tuple()
        return "DECIMAL" if len(digits) <= 38 and -exponent <= 38 else "DOUBLE"
    if isinstance(value, str):
        return "STRING"
    return "OBJECT" if isinstance(value, dict) else "ARRAY"


def text_of(value: Any, kind: str) -> str | None:
    """The value as Spark's variant_get(..., 'string') writes it."""
    if value is None:
        return None
    if kind == "BIGINT":
        return str(int(value))
    if kind == "DECIMAL":  # VARIANT keeps a decimal without trailing zeros: 12.0 is 12, 0.0100 is 0.01
        return format(Decimal(value).normalize(), "f")
    if kind == "DOUBLE":
        return java_double(float(value))
    if kind == "BOOLEAN":
        return "true" if value else "false"
    if kind == "STRING":
        return value
    return to_json(value)


def to_json(value: Any) -> str:
    """A value as Spark's to_json of a VARIANT writes it (objects' keys sorted, compact)."""
    if isinstance(value, Number):
        return text_of(value, json_type(value))
    if isinstance(value, dict):
        return (
            "{" + ",".join(f"{json.dumps(k, ensure_ascii=False)}:{to_json(v)}" for k, v in sorted(value.items())) + "}"
        )
    if isinstance(value, list):
        return "[" + ",".join(to_json(v) for v in value) + "]"
    return json.dumps(value, ensure_ascii=False)


def _scalar_text(value: Any) -> str | None:
    """A value as Spark's STRING parse reads it (strings unquoted, anything else as its JSON text)."""
    if value is None or (isinstance(value, str) and not isinstance(value, Number)):
        return value
    return value if isinstance(value, Number) else to_json(value)


def epoch_ms(value: Any, kind: str) -> dt.datetime | None:
    if kind != "BIGINT" or not 0 <= int(value) <= MAX_EPOCH_MS:
        return None
    return EPOCH + dt.timedelta(milliseconds=int(value))


def rfc3339(value: Any, kind: str) -> dt.datetime | None:
    """An RFC 3339 string as Spark's try_to_timestamp reads it (fraction past microseconds truncated)."""
    if kind != "STRING" or not _RFC3339.match(value):
        return None
    y, mo, d, h, mi, s, frac, zone = _PARTS.match(value).groups()
    try:
        offset = (
            dt.timedelta(0)
            if zone == "Z"
            else int(zone[0] + "1") * dt.timedelta(hours=int(zone[1:3]), minutes=int(zone[4:6]))
        )
        local = dt.datetime(int(y), int(mo), int(d), int(h), int(mi), int(s), int((frac or "0")[:6].ljust(6, "0")))
        return (local - offset).replace(tzinfo=UTC)
    except (ValueError, OverflowError):
        return None


def _check(rule: FieldRule, value: Any, present: bool, event_time: dt.datetime | None) -> str | None:
    """The code ``rule`` rejects the field with, or None."""
    kind = json_type(value) if present else None
    if kind is None or kind == "VOID":
        return None
    accepted = kind in rule.types
    if not accepted:
        return rule.code
    if rule.kind == "integer" and not rule.low <= int(value) <= rule.high:
        return rule.range_code or rule.code
    if rule.allowed and text_of(value, kind) not in rule.allowed:
        return rule.code
    if rule.as_time and event_time is None:
        return rule.code
    return None


@functools.cache
def _side_type(rules: TradeRules) -> str:
    return CANONICAL_TYPE[rules.field(rules.side).kind]


def _trade(rules: TradeRules, item: Any, index: int, fast: bool) -> dict[str, Any]:
    """One trade object (or what stands in its place) -> its candidate fields, parse_error, detail.
    ``fast``: the payload is in the exchange's canonical layout, whose values Spark reads as their
    JSON text (an integer as written, a fraction as Java writes the double: 65000.0, 0.01)."""
    obj = item if isinstance(item, dict) else {}
    typed = {r.key: (obj.get(r.key), json_type(obj.get(r.key)) if r.key in obj else None) for r in rules.fields}
    time_value, time_kind = typed[rules.time]
    event_time = (epoch_ms if rules.time_format == "epoch_ms" else rfc3339)(time_value, time_kind)
    side_value, side_kind = typed[rules.side]
    side_text = _text(side_value, side_kind, fast)
    if rules.side_map:
        wanted = _side_type(rules)
        taker_side = dict(rules.side_map).get(side_text) if side_kind == wanted else None
    else:
        taker_side = side_text
    error = detail = None
    if fast and event_time is not None:
        pass  # the exchange's own layout has every type and range right (as k2.exchanges.spark skips them)
    elif rules.many and not isinstance(item, dict) and typed[rules.symbol][1] is None:
        error, detail = "invalid_trade_item", f"{rules.trades_key}[{index}] is not a trade object: {to_json(item)}"
    else:
        for rule in rules.fields:
            value, kind = typed[rule.key]
            code = _check(rule, value, kind is not None, event_time)
            if code:
                error, detail = code, rule.prefix + to_json(value)[:100]
                break

    def text(key: str) -> str | None:
        return _text(*typed[key], fast)

    return {
        "item_index": index,
        "exchange_symbol": text(rules.symbol),
        "trade_id": text(rules.trade_id),
        "event_time": event_time,
        "price_text": text(rules.price),
        "quantity_text": text(rules.quantity),
        "taker_side": taker_side,
        "parse_error": error,
        "parse_detail": detail,
    }


def _text(value: Any, kind: str | None, fast: bool) -> str | None:
    if kind is None:
        return None
    if not fast or kind == "BOOLEAN":
        return text_of(value, kind)
    if isinstance(value, Number) and kind != "BIGINT":  # Spark's STRING parse reads a fraction as a double
        return java_double(float(value))
    return _scalar_text(value)


def _rejected(code: str, payload: str, detail: str | None = None) -> list[dict[str, Any]]:
    detail = detail or MESSAGE_DETAILS.get(code) or f"not a trade message: {payload[:200]}"
    empty = dict.fromkeys(("exchange_symbol", "trade_id", "event_time", "price_text", "quantity_text", "taker_side"))
    return [{"item_index": -1, **empty, "parse_error": code, "parse_detail": detail}]


def parse_payload(rules: TradeRules, value: bytes | None) -> list[dict[str, Any]]:
    """One raw payload -> its candidates (without the Kafka coordinates): one per trade, or one with
    item_index -1 when the message as a whole is rejected."""
    if not value:
        return _rejected("empty_payload", "")
    try:
        payload = value.decode("utf-8")
    except UnicodeDecodeError:
        return _rejected("not_utf8", "")
    try:
        message = loads(payload)
    except ValueError:
        return _rejected("malformed_json", payload)
    tag_key, tag_value = rules.tag
    if not isinstance(message, dict):
        return _rejected("not_a_trade", payload)
    if not rules.many:
        trade = message.get(rules.trades_key)
        if not isinstance(trade, dict) or trade.get(tag_key) != tag_value or isinstance(trade.get(tag_key), Number):
            return _rejected("not_a_trade", payload)
        return [_trade(rules, trade, 0, _canonical(rules, payload))]
    items = message.get(rules.trades_key)
    tag = message.get(tag_key)
    if tag is None or _scalar_text(tag) != tag_value or not isinstance(items, list):
        return _rejected("not_a_trade", payload)
    if rules.message_type is not None:
        kind = _scalar_text(message.get(rules.message_type.key))
        if kind not in rules.message_type.allowed:
            got = "nothing" if kind is None else kind[:100]
            return _rejected(rules.message_type.code, payload, rules.message_type.prefix + got)
    if not items:
        return _rejected("no_trades", payload)
    fast = _canonical(rules, payload)
    return [_trade(rules, item, i, fast) for i, item in enumerate(items)]


_PATTERNS: dict[str, re.Pattern[str]] = {}


def _canonical(rules: TradeRules, payload: str) -> bool:
    pattern = _PATTERNS.get(rules.canonical) or _PATTERNS.setdefault(rules.canonical, re.compile(rules.canonical))
    return pattern.search(payload) is not None
