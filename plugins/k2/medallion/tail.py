"""A compiler of Silver's declared checks (``k2.medallion.rules``): plain Python, for the records of
the live tail and unprocessed Bronze that ``k2.medallion.duckdb`` leaves. Bronze-shaped rows in ->
candidates (``k2.exchanges.tail``) -> the outcome Silver would give each: a typed trade or a reason
with its detail, then the first copy of each trade in Kafka order.

Decimal arithmetic follows Spark's: text -> DECIMAL(38,18) rounding half up (null when it does not
fit), price x quantity rounded to 16 fractional digits when both are small enough for Spark's exact
product, else to 6, as ``k2.medallion.transforms.silver.quote_amount`` computes it.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from decimal import ROUND_HALF_UP, Context, Decimal, InvalidOperation
from typing import Any

from k2.exchanges.rules import TradeRules
from k2.exchanges.tail import parse_payload
from k2.feeds.events import connection_event
from k2.medallion.rules import CHECKS, SIDES, TESTS, SilverCheck, names, time_relation

_CTX = Context(prec=200, rounding=ROUND_HALF_UP)
_DECIMAL = re.compile(r"^[+-]?(\d+(\.\d*)?|\.\d+)([eE][+-]?\d+)?$")
_DOUBLE_WORDS = {"nan": float("nan"), "inf": float("inf"), "infinity": float("inf")}
MONEY_LIMIT = Decimal(10) ** 20  # DECIMAL(38,18) holds |x| < 1e20
_SCALE_18, _SCALE_16, _SCALE_6 = Decimal("1e-18"), Decimal("1e-16"), Decimal("1e-6")


_BLANKS = "".join(chr(i) for i in range(33))  # what Spark trims around a number's text


def _trim(text: str) -> str:
    return text.strip(_BLANKS)


def money(text: str | None) -> Decimal | None:
    """Spark's try_cast(text AS DECIMAL(38,18))."""
    if text is None or not _DECIMAL.match(_trim(text)):
        return None
    try:
        value = _CTX.create_decimal(_trim(text)).quantize(_SCALE_18, context=_CTX)
    except InvalidOperation:
        return None
    return value if abs(value) < MONEY_LIMIT else None


def _double(text: str) -> float | None:
    """Spark's try_cast(text AS DOUBLE)."""
    trimmed = _trim(text)
    word = trimmed.lstrip("+-").lower()
    if word in _DOUBLE_WORDS:
        return -_DOUBLE_WORDS[word] if trimmed.startswith("-") else _DOUBLE_WORDS[word]
    return float(trimmed) if _DECIMAL.match(trimmed) else None


def _beyond_money(text: str | None) -> bool:
    number = None if text is None else _double(text)
    return number is not None and number == number and abs(number) >= 1e20


def quote_amount(price: Decimal | None, quantity: Decimal | None) -> Decimal | None:
    """k2.medallion.transforms.silver.quote_amount, in Python."""
    if price is None or quantity is None:
        return None
    product = _CTX.multiply(price, quantity)
    if abs(price) < 10**10 and abs(quantity) < 10**11:  # both fit decimal(28,18) and decimal(29,18)
        value = product.quantize(_SCALE_16, context=_CTX)
    else:
        value = product.quantize(_SCALE_6, context=_CTX)
        if abs(value) >= Decimal(10) ** 32:  # DECIMAL(38,6)
            return None
    return value.quantize(_SCALE_18, context=_CTX) if abs(value) < MONEY_LIMIT else None


def spark_time(value: dt.datetime) -> str:
    """A timestamp as Spark casts it to a string (UTC session): fraction without trailing zeros."""
    text = value.astimezone(dt.UTC).strftime("%Y-%m-%d %H:%M:%S")
    return f"{text}.{value.microsecond:06d}".rstrip("0") if value.microsecond else text


Test = Callable[[dict[str, Any]], bool]


def compile_check(check: SilverCheck, lead: dt.timedelta, age: dt.timedelta) -> Test:
    """The Python form of each test k2.medallion.rules names, as a function of a candidate row."""
    column, bound = check.column, check.bound
    number = column.replace("_text", "")
    tests: dict[str, Test] = {
        "missing": lambda r: r[column] is None,
        "unknown_symbol": lambda r: r["symbol"] is None,
        "not_decimal": lambda r: r[number] is None and not _beyond_money(r[column]),
        "not_positive": lambda r: r[number] is not None and r[number] <= 0,
        "at_or_above": lambda r: r[number] >= bound if r[number] is not None else _beyond_money(r[column]),
        "quote_at_or_above": lambda r: r["_quote"] is None or r["_quote"] >= bound,
        "quote_not_positive": lambda r: r["_quote"] is not None and r["_quote"] <= 0,
        "not_side": lambda r: r[column] not in SIDES,
        "after_kafka": lambda r: r[column] is not None and r[column] > r["kafka_timestamp"] + lead,
        "before_kafka": lambda r: r[column] is not None and r[column] < r["kafka_timestamp"] - age,
    }
    if TESTS - tests.keys():  # a test declared in k2.medallion.rules that this compiler does not know
        raise ValueError(f"Silver tests without a Python form: {sorted(TESTS - tests.keys())}")
    return tests[check.test]


def _shown(check: SilverCheck, row: dict[str, Any], lead_s: int, age_s: int) -> str:
    if not check.shows:
        return ""
    if check.shows == "product":
        p, q = row["price_text"], row["quantity_text"]
        value = None if p is None or q is None else f"{p} x {q}"
    elif check.shows in ("after", "before"):
        words = time_relation(check.shows, lead_s, age_s)
        value = f"{spark_time(row['event_time'])}{words}{spark_time(row['kafka_timestamp'])}"
    else:
        value = row[check.shows]
    return "nothing" if value is None else value[:100]


@dataclass(frozen=True)
class Judging:
    """What judging an exchange's records needs, in each compiler but Spark's: its rules, its symbols
    (exchange symbol -> K2's) and Silver's bounds on an event time's lead and age over the Kafka
    timestamp."""

    exchange: str
    rules: TradeRules
    symbols: dict[str, str]
    lead_s: int
    age_s: int


class Classifier:
    """Silver's outcome for each candidate of one exchange, as the batch would decide it."""

    def __init__(self, judging: Judging) -> None:
        self.judging = judging
        lead, age = dt.timedelta(seconds=judging.lead_s), dt.timedelta(seconds=judging.age_s)
        self.checks = [(c, compile_check(c, lead, age)) for c in CHECKS]
        words = names(judging.exchange, judging.rules.payload_fields)
        self.prefix = {c.code: c.prefix.format(**words) for c in CHECKS}
        self.suffix = {c.code: c.suffix.format(**words) for c in CHECKS}

    def classify(self, row: dict[str, Any]) -> dict[str, Any]:
        """A candidate (Kafka coordinates + parse output) with symbol, price, quantity, quote_amount,
        reason and detail added."""
        row["symbol"] = self.judging.symbols.get(row["exchange_symbol"]) if row["exchange_symbol"] is not None else None
        row["price"], row["quantity"] = money(row["price_text"]), money(row["quantity_text"])
        row["_quote"] = quote_amount(row["price"], row["quantity"])
        row["reason"] = row["detail"] = None
        if row["parse_error"] is not None:
            row["reason"], row["detail"] = row["parse_error"], row["parse_detail"]
            return row
        for check, failed in self.checks:
            if failed(row):
                shown = _shown(check, row, self.judging.lead_s, self.judging.age_s)
                row["reason"] = check.code
                row["detail"] = self.prefix[check.code] + shown + self.suffix[check.code]
                break
        return row

    def candidates(self, records: Iterable[dict[str, Any]]) -> list[dict[str, Any]]:
        """Bronze-shaped records (kafka_topic, kafka_partition, kafka_offset, kafka_timestamp,
        ingested_at, value, optionally headers) -> classified candidates. Connection events are
        neither trades nor dead letters: Silver routes them to ops.connection_events, so they are
        skipped here (``k2.medallion.transforms.events`` is the Spark form of the same rule)."""
        out = []
        for record in records:
            if connection_event(record) is not None:
                continue
            for item in parse_payload(self.judging.rules, record["value"]):
                out.append(self.classify({**record, **item}))
        return out


def first_copies(classified: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The valid candidates, first copy of each (symbol, trade_id) in Kafka order (partition, offset,
    item), as Silver's rank_copies keeps them."""

    def position(row: dict[str, Any]) -> tuple[int, int, int]:
        return (row["kafka_partition"], row["kafka_offset"], row["item_index"])

    first: dict[tuple[str, str], dict[str, Any]] = {}
    for row in classified:
        key = (row["symbol"], row["trade_id"])
        if row["reason"] is None and (key not in first or position(row) < position(first[key])):
            first[key] = row
    return sorted(first.values(), key=position)
