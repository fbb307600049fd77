"""Silver's validation rules, declared once as data, for every exchange alike.

Each candidate trade (what an exchange's rules yield, ``k2.exchanges.rules``) is checked in the order
of :data:`CHECKS`; the first that fails makes it a dead letter with that reason. Three compilers
consume the same declarations: ``k2.medallion.transforms.silver`` (Spark, the batch),
``k2.medallion.duckdb`` (DuckDB SQL, the query) and ``k2.medallion.tail`` (Python, the records the
SQL leaves). Each implements every test named in :data:`TESTS` (each asserts it at import);
``tests/spark/test_rules_compilers.py`` asserts that they agree.

Bounds on one trade, so that Gold's sums of a bar can never overflow MONEY = DECIMAL(38,18), which
holds 20 integer digits (< 1e20): price, quantity and quote amount are each below 1e12, so a bar's
volume_base, volume_quote and taker volumes fit for up to 1e8 trades per symbol and bar, the 1-day
bar included (the busiest spot pairs trade ~1e7 times a day). A trade past a bound cannot be
aggregated exactly, so it is a dead letter, never a failed Silver or Gold job.
"""

from __future__ import annotations

from dataclasses import dataclass

SIDES = ("buy", "sell")
MAX_PRICE = 10**12
MAX_QUANTITY = 10**12
MAX_QUOTE_AMOUNT = 10**12
_BOUND = "(Gold's sums must fit DECIMAL(38,18))"


@dataclass(frozen=True)
class SilverCheck:
    """One rule: ``test`` (by name) on ``column`` fails -> reason ``code``. The detail is ``prefix``,
    then what ``shows`` names ("" : nothing; a column's text, "nothing" when null; "product": price
    x quantity as text; "after"/"before": the event and Kafka times), then ``suffix``. Prefix and
    suffix name fields as ``{price}`` and the like (see :func:`names`)."""

    code: str
    test: str
    column: str
    prefix: str
    shows: str = ""
    suffix: str = ""
    bound: int | None = None


CHECKS: tuple[SilverCheck, ...] = (
    SilverCheck("missing_symbol", "missing", "exchange_symbol", "the trade has no {symbol}"),
    SilverCheck(
        "unknown_symbol",
        "unknown_symbol",
        "exchange_symbol",
        "symbol ",
        "exchange_symbol",
        " is not configured for {exchange}",
    ),
    SilverCheck("missing_trade_id", "missing", "trade_id", "the trade has no {trade_id}"),
    SilverCheck("missing_price", "missing", "price_text", "the trade has no {price}"),
    SilverCheck("invalid_price", "not_decimal", "price_text", "{price} is not a decimal number: ", "price_text"),
    SilverCheck("non_positive_price", "not_positive", "price_text", "{price} must be > 0, got ", "price_text"),
    SilverCheck(
        "price_out_of_range",
        "at_or_above",
        "price_text",
        f"{{price}} must be below {MAX_PRICE} {_BOUND}, got ",
        "price_text",
        bound=MAX_PRICE,
    ),
    SilverCheck("missing_quantity", "missing", "quantity_text", "the trade has no {quantity}"),
    SilverCheck(
        "invalid_quantity", "not_decimal", "quantity_text", "{quantity} is not a decimal number: ", "quantity_text"
    ),
    SilverCheck(
        "non_positive_quantity", "not_positive", "quantity_text", "{quantity} must be > 0, got ", "quantity_text"
    ),
    SilverCheck(
        "quantity_out_of_range",
        "at_or_above",
        "quantity_text",
        f"{{quantity}} must be below {MAX_QUANTITY} {_BOUND}, got ",
        "quantity_text",
        bound=MAX_QUANTITY,
    ),
    SilverCheck(
        "quote_amount_overflow",
        "quote_at_or_above",
        "",
        "{price} x {quantity} = ",
        "product",
        f" must be below {MAX_QUOTE_AMOUNT} {_BOUND}",
        bound=MAX_QUOTE_AMOUNT,
    ),
    SilverCheck(
        "quote_amount_underflow",
        "quote_not_positive",
        "",
        "{price} x {quantity} = ",
        "product",
        " rounds to 0 in DECIMAL(38,18)",
    ),
    SilverCheck("invalid_side", "not_side", "taker_side", "{side} is neither buy nor sell: ", "taker_side"),
    SilverCheck("invalid_timestamp", "missing", "event_time", "the {event_time} is missing or unreadable"),
    SilverCheck("future_timestamp", "after_kafka", "event_time", "{event_time} ", "after"),
    SilverCheck("stale_timestamp", "before_kafka", "event_time", "{event_time} ", "before"),
)
TESTS = frozenset(c.test for c in CHECKS)


def names(exchange: str, payload_fields: dict[str, str]) -> dict[str, str]:
    """How details name each field: "price", or "price (field p)" when the payload's name is known."""

    def name(column: str, word: str) -> str:
        payload = payload_fields.get(column)
        return f"{word} (field {payload})" if payload else word

    return {
        "exchange": exchange,
        "symbol": name("exchange_symbol", "symbol"),
        "trade_id": name("trade_id", "trade id"),
        "price": name("price_text", "price"),
        "quantity": name("quantity_text", "quantity"),
        "side": name("taker_side", "taker side"),
        "event_time": name("event_time", "trade time"),
    }


def time_relation(shows: str, lead_s: int, age_s: int) -> str:
    """The words between the event time and the Kafka timestamp in a future/stale detail."""
    return (
        f" is over {lead_s}s after its Kafka timestamp "
        if shows == "after"
        else f" is over {age_s}s before its Kafka timestamp "
    )
