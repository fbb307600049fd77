"""Silver's validation, table-driven: every candidate gets exactly one outcome, the first failing
check's reason; typed values, quote amounts, copy ranking and the output shapes."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from dataclasses import dataclass, field
from decimal import ROUND_HALF_UP, Decimal
from typing import Any

import pytest
from pyspark.sql import DataFrame, Row, SparkSession
from pyspark.sql import functions as F

from k2.exchanges.spark import CANDIDATE_COLUMNS
from k2.lake.tables import DEAD_LETTER, SILVER_TRADES
from k2.medallion.transforms.silver import (
    SilverRules,
    classify,
    outcome_columns,
    quote_amount,
    rank_copies,
    to_dead_letters,
    to_trades,
)
from tests.spark.frames import CANDIDATE_SCHEMA, INGESTED_AT, MONEY_TYPE, at, candidate, utc

KAFKA_TS = at("2026-11-20T10:00:40")
RULES = SilverRules("binance", {"BTCUSDT": "BTC-USDT", "ETHBTC": "ETH-BTC"})
LEAD_S, AGE_S = RULES.max_event_lead_s, RULES.max_event_age_s
# what parse_bronze yields for a message it could not read: coordinates and payload only
UNREADABLE: dict[str, Any] = dict.fromkeys(
    ("exchange_symbol", "trade_id", "price_text", "quantity_text", "taker_side", "event_after_s")
) | {"item_index": -1}


@dataclass(frozen=True)
class Case:
    id: str
    fields: dict[str, Any] = field(default_factory=dict)  # overrides of frames.candidate's valid trade
    reason: str | None = None  # None: a valid trade
    detail: str = ""  # expected part of the detail


CASES = [
    Case("valid_buy"),
    Case("valid_sell_other_symbol", {"exchange_symbol": "ETHBTC", "taker_side": "sell", "price_text": "0.04921"}),
    Case("valid_exponent_quantity", {"quantity_text": "1.0E-8"}),
    Case("valid_event_time_at_lead_limit", {"event_after_s": LEAD_S}),
    Case("valid_event_time_at_age_limit", {"event_after_s": -AGE_S}),
    Case(
        "parse_error_wins_over_every_check",
        {**UNREADABLE, "parse_error": "malformed_json", "parse_detail": "truncated"},
        "malformed_json",
        "truncated",
    ),
    Case("missing_symbol", {"exchange_symbol": None}, "missing_symbol", "no symbol"),
    Case("unknown_symbol", {"exchange_symbol": "DOGEUSDT"}, "unknown_symbol", "DOGEUSDT is not configured for binance"),
    Case("unknown_symbol_is_case_sensitive", {"exchange_symbol": "btcusdt"}, "unknown_symbol", "btcusdt"),
    Case("missing_trade_id", {"trade_id": None}, "missing_trade_id", "no trade id"),
    Case("missing_price", {"price_text": None}, "missing_price", "no price"),
    Case("invalid_price_word", {"price_text": "abc"}, "invalid_price", "not a decimal number: abc"),
    Case("invalid_price_two_points", {"price_text": "1.2.3"}, "invalid_price", "1.2.3"),
    Case("invalid_price_empty", {"price_text": ""}, "invalid_price", "not a decimal number"),
    Case("invalid_price_nan", {"price_text": "NaN"}, "invalid_price", "NaN"),
    Case("zero_price", {"price_text": "0"}, "non_positive_price", "price must be > 0, got 0"),
    Case("negative_price", {"price_text": "-1.5"}, "non_positive_price", "got -1.5"),
    Case("missing_quantity", {"quantity_text": None}, "missing_quantity", "no quantity"),
    Case("invalid_quantity", {"quantity_text": "1,5"}, "invalid_quantity", "not a decimal number: 1,5"),
    Case("zero_quantity", {"quantity_text": "0.00000000"}, "non_positive_quantity", "got 0.00000000"),
    Case("negative_quantity", {"quantity_text": "-0.1"}, "non_positive_quantity", "got -0.1"),
    Case("upper_case_side", {"taker_side": "BUY"}, "invalid_side", "neither buy nor sell"),
    Case("missing_side", {"taker_side": None}, "invalid_side", "neither buy nor sell"),
    Case("missing_event_time", {"event_after_s": None}, "invalid_timestamp", "missing or unreadable"),
    Case("future_event_time", {"event_after_s": LEAD_S + 1}, "future_timestamp", f"over {LEAD_S}s after"),
    Case("stale_event_time", {"event_after_s": -AGE_S - 1}, "stale_timestamp", f"over {AGE_S}s before"),
    # several checks fail: the first in Silver's order names the outcome
    Case("symbol_before_price", {"exchange_symbol": "DOGEUSDT", "price_text": "abc"}, "unknown_symbol"),
    Case("trade_id_before_price", {"trade_id": None, "price_text": "-1"}, "missing_trade_id"),
    Case("price_before_quantity", {"price_text": "0", "quantity_text": "x"}, "non_positive_price"),
    Case("quantity_before_side", {"quantity_text": "-1", "taker_side": "hold"}, "non_positive_quantity"),
    Case("side_before_time", {"taker_side": "hold", "event_after_s": None}, "invalid_side"),
]
STABLE_REASONS = {
    "missing_symbol",
    "unknown_symbol",
    "missing_trade_id",
    "missing_price",
    "invalid_price",
    "non_positive_price",
    "missing_quantity",
    "invalid_quantity",
    "non_positive_quantity",
    "invalid_side",
    "invalid_timestamp",
    "future_timestamp",
    "stale_timestamp",
}


def candidates(spark: SparkSession, rows: list[tuple]) -> DataFrame:
    return spark.createDataFrame(rows, CANDIDATE_SCHEMA)


@pytest.fixture(scope="module")
def classified(spark: SparkSession) -> dict[str, Row]:
    """Every case classified in one frame (offset = position in CASES), by case id."""
    rows = [candidate(i, kafka_timestamp=KAFKA_TS, **case.fields) for i, case in enumerate(CASES)]
    out = classify(candidates(spark, rows), RULES).collect()
    assert len(out) == len(CASES)  # one row in, one row out
    return {CASES[r.kafka_offset].id: r for r in out}


def test_the_table_covers_every_reason_code() -> None:
    assert {c.reason for c in CASES if not c.fields.get("parse_error")} == STABLE_REASONS | {None}


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.id)
def test_classify_names_the_first_failing_check(classified: dict[str, Row], case: Case) -> None:
    row = classified[case.id]
    assert row.reason == case.reason
    if case.reason is None:
        assert row.detail is None
    else:
        assert row.detail and case.detail in row.detail


def test_valid_candidates_get_typed_values(classified: dict[str, Row]) -> None:
    buy, sell = classified["valid_buy"], classified["valid_sell_other_symbol"]
    assert (buy.symbol, buy.price, buy.quantity) == ("BTC-USDT", Decimal("65000.1"), Decimal("0.001"))
    assert (sell.symbol, sell.price) == ("ETH-BTC", Decimal("0.04921"))
    assert classified["valid_exponent_quantity"].quantity == Decimal("0.00000001")
    assert utc(buy.event_time) == KAFKA_TS - dt.timedelta(seconds=35)


def test_classify_adds_typed_columns_and_the_outcome(spark: SparkSession) -> None:
    df = classify(candidates(spark, [candidate(0, kafka_timestamp=KAFKA_TS)]), RULES)
    assert df.columns == [*CANDIDATE_COLUMNS, "symbol", "price", "quantity", "reason", "detail"]
    types = dict(df.dtypes)
    assert (types["price"], types["quantity"], types["symbol"]) == (MONEY_TYPE, MONEY_TYPE, "string")


def test_rules_set_the_symbols_and_time_limits(spark: SparkSession) -> None:
    tight = SilverRules("binance", {"BTCUSDT": "BTC-USDT"}, max_event_lead_s=10, max_event_age_s=60)
    rows = [candidate(i, kafka_timestamp=KAFKA_TS, event_after_s=after) for i, after in enumerate((10, 11, -60, -61))]
    got = {r.kafka_offset: r.reason for r in classify(candidates(spark, rows), tight).collect()}
    assert got == {0: None, 1: "future_timestamp", 2: None, 3: "stale_timestamp"}
    nothing_configured = classify(candidates(spark, rows[:1]), SilverRules("binance", {}))
    assert nothing_configured.first().reason == "unknown_symbol"


QUOTES = [  # price, quantity, fractional digits of the quote amount (None: exact)
    ("65000.12345678", "0.12345678", None),
    ("0.00000001", "0.00000001", None),
    ("9999999999.99999999", "0.5", None),
    ("0.04921234", "12.34567891", None),
    ("12345678901.12345678", "0.12345678", 6),  # price from 1e10: 6 fractional digits, rounded half up
    ("2", "123456789012.5", 6),  # quantity from 1e11
]


@pytest.fixture(scope="module")
def quote_amounts(spark: SparkSession) -> list[Decimal]:
    df = spark.createDataFrame([(i, p, q) for i, (p, q, _) in enumerate(QUOTES)], "i int, p string, q string")
    amount = quote_amount(F.col("p").cast(MONEY_TYPE), F.col("q").cast(MONEY_TYPE))
    return [r[0] for r in df.orderBy("i").select(amount).collect()]


@pytest.mark.parametrize("case", range(len(QUOTES)), ids=[f"{p}*{q}" for p, q, _ in QUOTES])
def test_quote_amount_is_exact_for_8_decimal_inputs_else_rounded(quote_amounts: list[Decimal], case: int) -> None:
    price, quantity, digits = QUOTES[case]
    product = Decimal(price) * Decimal(quantity)
    expected = product if digits is None else product.quantize(Decimal(10) ** -digits, ROUND_HALF_UP)
    assert quote_amounts[case] == expected


def test_rank_copies_puts_the_first_valid_copy_first(spark: SparkSession) -> None:
    rows = [
        ("BTC-USDT", "1", None, 1, 5, 0),
        ("BTC-USDT", "1", None, 0, 9, 0),
        ("BTC-USDT", "1", "invalid_price", 0, 1, 0),  # earlier, but rejected
        ("BTC-USDT", "2", "invalid_price", 0, 2, 0),
        ("BTC-USDT", "2", None, 0, 3, 0),
        ("BTC-USDT", "3", None, 0, 7, 2),
        ("BTC-USDT", "3", None, 0, 7, 1),  # same message: the earlier item wins
        ("ETH-USDT", "1", None, 0, 4, 0),  # same id, other symbol: a different trade
    ]
    df = spark.createDataFrame(
        rows, "symbol string, trade_id string, reason string, kafka_partition int, kafka_offset long, item_index int"
    )
    copies = {
        (r.trade_id, r.symbol, r.kafka_partition, r.kafka_offset, r.item_index): r.copy
        for r in rank_copies(df).collect()
    }
    assert copies == {
        ("1", "BTC-USDT", 0, 9, 0): 1,
        ("1", "BTC-USDT", 1, 5, 0): 2,
        ("1", "BTC-USDT", 0, 1, 0): 3,
        ("2", "BTC-USDT", 0, 3, 0): 1,
        ("2", "BTC-USDT", 0, 2, 0): 2,
        ("3", "BTC-USDT", 0, 7, 1): 1,
        ("3", "BTC-USDT", 0, 7, 2): 2,
        ("1", "ETH-USDT", 0, 4, 0): 1,
    }


@pytest.fixture(scope="module")
def outcomes(spark: SparkSession) -> Iterator[DataFrame]:
    """Two copies of one valid trade (offsets 0 and 3), a second valid trade and two rejects, as the
    Silver step prepares them: classified, trimmed, ranked."""
    rows = [
        candidate(0, kafka_timestamp=KAFKA_TS, trade_id="7", value=b"first"),
        candidate(1, kafka_timestamp=KAFKA_TS, price_text="abc", value=b"bad price"),
        candidate(2, kafka_timestamp=KAFKA_TS, trade_id="8", price_text="2.5", quantity_text="4", taker_side="sell"),
        candidate(3, kafka_timestamp=KAFKA_TS, trade_id="7", value=b"copy"),
        candidate(
            4, kafka_timestamp=KAFKA_TS, parse_error="empty_payload", parse_detail="no value", value=b"", **UNREADABLE
        ),
    ]
    ranked = rank_copies(outcome_columns(classify(candidates(spark, rows), RULES))).cache()
    yield ranked
    ranked.unpersist()


def test_outcome_columns_keep_the_payload_of_rejects_only(outcomes: DataFrame) -> None:
    assert outcomes.columns == [
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
        "value",
        "copy",
    ]
    values = {r.kafka_offset: r.value for r in outcomes.collect()}
    assert values == {0: None, 1: bytearray(b"bad price"), 2: None, 3: None, 4: bytearray(b"")}


def test_to_trades_yields_silver_rows_of_valid_first_copies(outcomes: DataFrame) -> None:
    processed = at("2026-11-20T11:00:00")
    trades = to_trades(outcomes.where(F.col("copy") == 1), "binance", F.lit(processed))
    assert trades.columns == [c.name for c in SILVER_TRADES.columns]
    types = dict(trades.dtypes)
    assert {types[c] for c in ("price", "quantity", "quote_amount")} == {MONEY_TYPE}
    rows = {r.trade_id: r for r in trades.collect()}
    assert sorted(rows) == ["7", "8"]
    seven, eight = rows["7"], rows["8"]
    assert (seven.exchange, seven.symbol, seven.exchange_symbol, seven.kafka_offset) == (
        "binance",
        "BTC-USDT",
        "BTCUSDT",
        0,
    )
    assert (eight.price, eight.quantity, eight.quote_amount, eight.taker_side) == (
        Decimal("2.5"),
        Decimal(4),
        Decimal(10),
        "sell",
    )
    assert utc(seven.bronze_ingested_at) == INGESTED_AT and utc(seven.processed_at) == processed


def test_to_dead_letters_yields_every_reject_with_its_payload(outcomes: DataFrame) -> None:
    detected = at("2026-11-20T11:00:00")
    dead = to_dead_letters(outcomes, "binance", F.lit(detected))
    assert dead.columns == [c.name for c in DEAD_LETTER.columns]
    rows = {r.kafka_offset: r for r in dead.collect()}
    assert {o: (r.reason, r.item_index, bytes(r.raw_value)) for o, r in rows.items()} == {
        1: ("invalid_price", 0, b"bad price"),
        4: ("empty_payload", -1, b""),
    }
    assert rows[4].detail == "no value" and all(r.exchange == "binance" for r in rows.values())
    assert utc(rows[1].detected_at) == detected and utc(rows[1].bronze_ingested_at) == INGESTED_AT
