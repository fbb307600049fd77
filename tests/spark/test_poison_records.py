"""Poison records, table-driven per exchange: every field of a native payload with a value of the
wrong JSON type, out of its documented range, or past what Silver's money type and Gold's sums
hold. Each becomes exactly one dead letter with its reason and a detail naming the field and the
value, never a failed job, and the valid trades next to it (in the same batch, the same frame) stay
valid. Bronze rows are built from the raw payload text, parsed by the exchange and classified by
Silver's common rules, as the Silver job does."""

from __future__ import annotations

import datetime as dt
import importlib
import re
from dataclasses import dataclass, field
from decimal import Decimal

import pytest
from pyspark.sql import DataFrame, Row, SparkSession
from pyspark.sql import functions as F

from k2.exchanges import get_exchange
from k2.medallion.transforms.gold import minute_bars, roll_up
from k2.medallion.transforms.silver import (
    MAX_PRICE,
    MAX_QUANTITY,
    MAX_QUOTE_AMOUNT,
    SilverRules,
    classify,
    to_dead_letters,
    to_trades,
)

UTC = dt.UTC
KAFKA_TS = dt.datetime(2026, 11, 20, 10, 0, 40, tzinfo=UTC)
TRADE_TIME = dt.datetime(2026, 11, 20, 10, 0, 5, tzinfo=UTC)
TRADE_MS = int(TRADE_TIME.timestamp() * 1000)
INGESTED_AT = dt.datetime(2026, 11, 20, 10, 1, tzinfo=UTC)
BRONZE_SCHEMA = (
    "kafka_topic string, kafka_partition int, kafka_offset bigint, kafka_timestamp timestamp, "
    "kafka_timestamp_type int, key binary, value binary, headers array<struct<key:string,value:binary>>, "
    "ingested_at timestamp"
)
INT64_MAX = "9223372036854775807"
MS_RANGE = "an integer from 0 to 253402300799999"
ID_RANGE = f"an integer from 0 to {INT64_MAX}"
MONEY_BOUND = "(Gold's sums must fit DECIMAL(38,18))"


@dataclass(frozen=True)
class Case:
    """A valid trade with some fields replaced by raw JSON text (None: the field is left out)."""

    id: str
    fields: dict[str, str | None] = field(default_factory=dict)
    reason: str | None = None  # None: still a valid trade
    detail: str = ""  # expected part of the dead letter's detail
    raw: str | None = None  # Kraken: a whole batch element instead of a trade object


DEFAULT_HEADERS = [("exchange", b"test")]


def bronze(spark: SparkSession, topic: str, payloads: list[bytes], headers: list[list] | None = None) -> DataFrame:
    """Bronze rows (as ``bronze.<exchange>_trades`` holds them) of these payloads, offsets 0, 1, ...
    (``headers``: each record's, default one exchange header)."""
    headers = headers or [DEFAULT_HEADERS] * len(payloads)
    rows = [
        (topic, 0, offset, KAFKA_TS, 0, b"k", payload, h, INGESTED_AT)
        for offset, (payload, h) in enumerate(zip(payloads, headers, strict=True))
    ]
    return spark.createDataFrame(rows, BRONZE_SCHEMA)


def rules_for(name: str) -> SilverRules:
    exchange = get_exchange(name)
    symbols = {s: exchange.normalise_symbol(s) for s in exchange.default_symbols}
    return SilverRules(name, symbols, payload_fields=exchange.payload_fields)


def classified(spark: SparkSession, name: str, payloads: list[bytes]) -> dict[tuple[int, int], Row]:
    """(Kafka offset, item index) -> the classified candidate, as the Silver job computes it."""
    exchange = get_exchange(name)
    rows = classify(exchange.parse_bronze(bronze(spark, f"k2.{name}.raw", payloads)), rules_for(name)).collect()
    out = {(r.kafka_offset, r.item_index): r for r in rows}
    assert len(out) == len(rows)  # one outcome per item
    return out


# --- Binance: one trade per message ----------------------------------------------------------------
def binance_payload(trade_id: int, overrides: dict[str, str | None]) -> bytes:
    data = {
        "e": '"trade"',
        "E": str(TRADE_MS + 1),
        "s": '"BTCUSDT"',
        "t": str(trade_id),
        "p": '"65000.10"',
        "q": '"0.00100000"',
        "T": str(TRADE_MS),
        "m": "false",
        "M": "true",
    } | overrides
    body = ",".join(f'"{k}":{v}' for k, v in data.items() if v is not None)
    return f'{{"stream":"btcusdt@trade","data":{{{body}}}}}'.encode()


BINANCE = [
    Case("valid"),
    Case("valid_largest_trade_id", {"t": INT64_MAX}),
    Case("valid_without_unused_event_time", {"E": None}),
    Case("valid_price_just_below_bound", {"p": '"999999999999.99999999"', "q": '"0.00000001"'}),
    Case("valid_quote_amount_just_below_bound", {"p": '"999999"', "q": '"1000000.5"'}),
    # trade time "T": epoch milliseconds, an int64 JSON integer
    Case(
        "trade_time_overflows_microseconds",  # measured: failed the whole job (long overflow)
        {"T": "9999999999999999"},
        "timestamp_out_of_range",
        f"field T (trade time, epoch ms) must be {MS_RANGE}, got 9999999999999999",
    ),
    Case("trade_time_before_epoch", {"T": "-1"}, "timestamp_out_of_range", "field T (trade time, epoch ms)"),
    Case(
        "trade_time_beyond_int64",
        {"T": "99999999999999999999"},
        "invalid_timestamp",
        f"field T (trade time, epoch ms) must be {MS_RANGE}, got 99999999999999999999",
    ),
    Case("trade_time_as_string", {"T": f'"{TRADE_MS}"'}, "invalid_timestamp", f'got "{TRADE_MS}"'),
    Case("trade_time_with_fraction", {"T": f"{TRADE_MS}.5"}, "invalid_timestamp", f"got {TRADE_MS}.5"),
    Case("trade_time_missing", {"T": None}, "invalid_timestamp", "the trade time (field T) is missing"),
    # event time "E": not used by Silver, but still of its documented type and range
    Case(
        "event_time_overflows_microseconds",
        {"E": "9999999999999999"},
        "timestamp_out_of_range",
        f"field E (event time, epoch ms) must be {MS_RANGE}, got 9999999999999999",
    ),
    Case("event_time_not_a_number", {"E": '"soon"'}, "invalid_timestamp", "field E (event time, epoch ms)"),
    # trade id "t": an int64 JSON integer
    Case("trade_id_word", {"t": '"abc"'}, "invalid_trade_id", f'field t (trade id) must be {ID_RANGE}, got "abc"'),
    Case("trade_id_numeric_string", {"t": '"12"'}, "invalid_trade_id", 'got "12"'),
    Case("trade_id_with_fraction", {"t": "1.5"}, "invalid_trade_id", "field t (trade id) must be an integer"),
    Case("trade_id_integral_decimal", {"t": "12.0"}, "invalid_trade_id", "field t (trade id) must be an integer"),
    Case("trade_id_negative", {"t": "-7"}, "invalid_trade_id", "got -7"),
    Case("trade_id_beyond_int64", {"t": "9223372036854775808"}, "invalid_trade_id", "got 9223372036854775808"),
    Case("trade_id_object", {"t": '{"id":1}'}, "invalid_trade_id", 'got {"id":1}'),
    Case("trade_id_null", {"t": "null"}, "missing_trade_id", "the trade has no trade id (field t)"),
    # symbol "s": a string
    Case("symbol_number", {"s": "5"}, "invalid_symbol", "field s (symbol) must be a string, got 5"),
    Case("symbol_unknown", {"s": '"DOGEUSDT"'}, "unknown_symbol", "symbol DOGEUSDT is not configured for binance"),
    # price "p" and quantity "q": decimal strings, within Silver's bounds
    Case("price_json_number", {"p": "100.5"}, "invalid_price", "field p (price) must be a decimal string, got 100.5"),
    Case("price_word", {"p": '"abc"'}, "invalid_price", "price (field p) is not a decimal number: abc"),
    Case(
        "price_beyond_decimal_38_18",
        {"p": '"1e50"'},
        "price_out_of_range",
        f"price (field p) must be below {MAX_PRICE} {MONEY_BOUND}, got 1e50",
    ),
    Case("price_at_bound", {"p": f'"{MAX_PRICE}"', "q": '"0.0001"'}, "price_out_of_range", f"got {MAX_PRICE}"),
    Case("quantity_json_number", {"q": "1"}, "invalid_quantity", "field q (quantity) must be a decimal string, got 1"),
    Case(
        "quantity_beyond_decimal_38_18",
        {"q": '"123456789012345678901234567890"'},
        "quantity_out_of_range",
        f"quantity (field q) must be below {MAX_QUANTITY} {MONEY_BOUND}, got 123456789012345678901234567890",
    ),
    Case("quantity_at_bound", {"p": '"0.0001"', "q": f'"{MAX_QUANTITY}"'}, "quantity_out_of_range"),
    Case(
        "quote_amount_overflow",
        {"p": '"999999999999"', "q": '"999999999999"'},
        "quote_amount_overflow",
        f"price (field p) x quantity (field q) = 999999999999 x 999999999999 must be below {MAX_QUOTE_AMOUNT}",
    ),
    Case("quote_amount_at_bound", {"p": '"1000000"', "q": '"1000000"'}, "quote_amount_overflow", "1000000 x 1000000"),
    Case(
        "quote_amount_rounds_to_zero",
        {"p": '"0.000000001"', "q": '"0.000000001"'},
        "quote_amount_underflow",
        "= 0.000000001 x 0.000000001 rounds to 0",
    ),
    # buyer is maker "m": a JSON boolean
    Case(
        "buyer_maker_string",
        {"m": '"true"'},
        "invalid_side",
        'field m (buyer is maker) must be true or false, got "true"',
    ),
    Case("buyer_maker_missing", {"m": None}, "invalid_side", "taker side (field m) is neither buy nor sell: nothing"),
    Case("buyer_maker_null", {"m": "null"}, "invalid_side", "neither buy nor sell"),
]


@pytest.fixture(scope="module")
def binance(spark: SparkSession) -> dict[tuple[int, int], Row]:
    """Every case followed by a valid trade, all in one frame: case i at offset 2i, its neighbour at 2i+1."""
    payloads = []
    for i, case in enumerate(BINANCE):
        payloads += [binance_payload(1000 + i, case.fields), binance_payload(5000 + i, {})]
    return classified(spark, "binance", payloads)


@pytest.mark.parametrize("case", BINANCE, ids=lambda c: c.id)
def test_binance_field_gets_its_reason_and_detail(binance: dict[tuple[int, int], Row], case: Case) -> None:
    i = BINANCE.index(case)
    row = binance[(2 * i, 0)]
    assert (row.reason, row.item_index) == (case.reason, 0)
    if case.reason is None:
        assert row.detail is None and row.trade_id == case.fields.get("t", str(1000 + i))
    else:
        assert case.detail in row.detail, row.detail
    neighbour = binance[(2 * i + 1, 0)]
    assert (neighbour.reason, neighbour.trade_id) == (None, str(5000 + i))


def test_binance_message_of_another_event_type_is_rejected_whole(spark: SparkSession) -> None:
    rows = classified(spark, "binance", [binance_payload(1, {"e": '"aggTrade"'}), binance_payload(2, {})])
    assert (rows[(0, -1)].reason, rows[(1, 0)].reason) == ("not_a_trade", None)


def test_binance_valid_values_are_exact(binance: dict[tuple[int, int], Row]) -> None:
    row = binance[(2 * BINANCE.index(next(c for c in BINANCE if c.id == "valid_price_just_below_bound")), 0)]
    assert (row.price, row.quantity) == (Decimal("999999999999.99999999"), Decimal("0.00000001"))
    valid = binance[(0, 0)]
    assert (valid.symbol, valid.taker_side, valid.event_time.replace(tzinfo=None)) == (
        "BTC-USDT",
        "buy",
        TRADE_TIME.replace(tzinfo=None),
    )


# --- Kraken: a batch of trades per message -----------------------------------------------------------
def kraken_item(trade_id: int, overrides: dict[str, str | None]) -> str:
    item = {
        "symbol": '"BTC/USD"',
        "side": '"buy"',
        "price": "65000.1",
        "qty": "0.01000000",
        "ord_type": '"market"',
        "trade_id": str(trade_id),
        "timestamp": '"2026-11-20T10:00:05.123456Z"',
    } | overrides
    return "{" + ",".join(f'"{k}":{v}' for k, v in item.items() if v is not None) + "}"


def kraken_payload(items: list[str], kind: str = "update") -> bytes:
    return f'{{"channel":"trade","type":"{kind}","data":[{",".join(items)}]}}'.encode()


KRAKEN = [
    Case("valid"),
    Case("valid_without_unused_order_type", {"ord_type": None}),
    Case("valid_limit_order", {"ord_type": '"limit"'}),
    Case("valid_exponent_price", {"price": "6.5e4"}),
    Case("valid_every_digit_kept", {"price": "0.123456789012345678", "qty": "99999999.99999999"}),
    Case("valid_offset_timestamp", {"timestamp": '"2026-11-20T12:00:05+02:00"'}),
    # a batch element that is no trade object: rejected alone, at its index
    Case("item_number", raw="5", reason="invalid_trade_item", detail="data[1] is not a trade object: 5"),
    Case("item_string", raw='"trade"', reason="invalid_trade_item", detail='data[1] is not a trade object: "trade"'),
    Case("item_array", raw="[1,2]", reason="invalid_trade_item", detail="data[1] is not a trade object: [1,2]"),
    Case("item_null", raw="null", reason="invalid_trade_item", detail="data[1] is not a trade object: null"),
    Case("item_empty_object", raw="{}", reason="missing_symbol", detail="the trade has no symbol (field symbol)"),
    # trade_id: an int64 JSON integer
    Case(
        "trade_id_string",
        {"trade_id": '"7"'},
        "invalid_trade_id",
        f'field trade_id (trade id) must be {ID_RANGE}, got "7"',
    ),
    Case("trade_id_with_fraction", {"trade_id": "7.5"}, "invalid_trade_id", "got 7.5"),
    Case("trade_id_negative", {"trade_id": "-7"}, "invalid_trade_id", "got -7"),
    Case("trade_id_beyond_int64", {"trade_id": "18446744073709551616"}, "invalid_trade_id", "got 18446744073709551616"),
    Case("trade_id_missing", {"trade_id": None}, "missing_trade_id", "the trade has no trade id (field trade_id)"),
    # price and qty: JSON numbers, within Silver's bounds
    Case("price_string", {"price": '"65000.1"'}, "invalid_price", 'field price must be a JSON number, got "65000.1"'),
    Case("price_boolean", {"price": "true"}, "invalid_price", "field price must be a JSON number, got true"),
    Case(
        "price_beyond_decimal_38_18",
        {"price": "1e50"},
        "price_out_of_range",
        f"price (field price) must be below {MAX_PRICE}",
    ),
    Case("price_infinite", {"price": "1e400"}, "price_out_of_range", "got Infinity"),
    Case("price_at_bound", {"price": str(MAX_PRICE), "qty": "0.0001"}, "price_out_of_range", f"got {MAX_PRICE}"),
    Case("price_zero", {"price": "0"}, "non_positive_price", "price (field price) must be > 0, got 0"),
    Case("price_missing", {"price": None}, "missing_price", "the trade has no price (field price)"),
    Case("qty_string", {"qty": '"0.5"'}, "invalid_quantity", 'field qty (quantity) must be a JSON number, got "0.5"'),
    Case("qty_negative", {"qty": "-0.5"}, "non_positive_quantity", "quantity (field qty) must be > 0, got -0.5"),
    Case("qty_at_bound", {"price": "0.0001", "qty": str(MAX_QUANTITY)}, "quantity_out_of_range", f"got {MAX_QUANTITY}"),
    Case(
        "quote_amount_overflow",
        {"price": "999999.9", "qty": "9999999"},
        "quote_amount_overflow",
        f"price (field price) x quantity (field qty) = 999999.9 x 9999999 must be below {MAX_QUOTE_AMOUNT}",
    ),
    Case(
        "quote_amount_rounds_to_zero",
        {"price": "0.0000000001", "qty": "0.0000000001"},
        "quote_amount_underflow",
        "rounds to 0",
    ),
    # side: "buy" or "sell"; ord_type: "market" or "limit" (when present)
    Case("side_upper_case", {"side": '"BUY"'}, "invalid_side", 'field side must be "buy" or "sell", got "BUY"'),
    Case("side_number", {"side": "1"}, "invalid_side", 'field side must be "buy" or "sell", got 1'),
    Case("side_missing", {"side": None}, "invalid_side", "taker side (field side) is neither buy nor sell: nothing"),
    Case(
        "order_type_unknown",
        {"ord_type": '"stop"'},
        "invalid_order_type",
        'field ord_type (order type) must be "market" or "limit", got "stop"',
    ),
    Case("order_type_number", {"ord_type": "3"}, "invalid_order_type", "got 3"),
    # symbol: a string the configuration knows
    Case("symbol_number", {"symbol": "5"}, "invalid_symbol", "field symbol must be a string, got 5"),
    Case("symbol_unknown", {"symbol": '"DOGE/USD"'}, "unknown_symbol", "symbol DOGE/USD is not configured for kraken"),
    Case("symbol_missing", {"symbol": None}, "missing_symbol", "the trade has no symbol (field symbol)"),
    # timestamp: an RFC 3339 string
    Case(
        "timestamp_not_rfc3339",
        {"timestamp": '"2026-11-20 10:00:05"'},
        "invalid_timestamp",
        'field timestamp (trade time) must be an RFC 3339 time (2024-01-01T00:00:00.1Z), got "2026-11-20 10:00:05"',
    ),
    Case("timestamp_number", {"timestamp": str(TRADE_MS)}, "invalid_timestamp", f"got {TRADE_MS}"),
    Case("timestamp_month_13", {"timestamp": '"2026-13-20T10:00:05Z"'}, "invalid_timestamp", '"2026-13-20T10:00:05Z"'),
    Case(
        "timestamp_last_representable",
        {"timestamp": '"9999-12-31T23:59:59.999999Z"'},
        "future_timestamp",
        "trade time (field timestamp) 9999-12-31 23:59:59.999999 is over 300s after its Kafka timestamp",
    ),
]


@pytest.fixture(scope="module")
def kraken(spark: SparkSession) -> dict[tuple[int, int], Row]:
    """One message per case: [a valid trade, the case, another valid trade]."""
    payloads = [
        kraken_payload(
            [kraken_item(3000 + i, {}), case.raw or kraken_item(1000 + i, case.fields), kraken_item(5000 + i, {})]
        )
        for i, case in enumerate(KRAKEN)
    ]
    return classified(spark, "kraken", payloads)


@pytest.mark.parametrize("case", KRAKEN, ids=lambda c: c.id)
def test_kraken_batch_element_is_judged_on_its_own(kraken: dict[tuple[int, int], Row], case: Case) -> None:
    i = KRAKEN.index(case)
    row = kraken[(i, 1)]
    assert row.reason == case.reason
    if case.reason is None:
        assert row.detail is None and row.trade_id == str(1000 + i)
    else:
        assert case.detail in row.detail, row.detail
    before, after = kraken[(i, 0)], kraken[(i, 2)]
    assert (before.reason, before.trade_id, after.reason, after.trade_id) == (None, str(3000 + i), None, str(5000 + i))


def test_kraken_keeps_every_digit_and_the_instant(kraken: dict[tuple[int, int], Row]) -> None:
    exact = kraken[(KRAKEN.index(next(c for c in KRAKEN if c.id == "valid_every_digit_kept")), 1)]
    assert (exact.price, exact.quantity) == (Decimal("0.123456789012345678"), Decimal("99999999.99999999"))
    exponent = kraken[(KRAKEN.index(next(c for c in KRAKEN if c.id == "valid_exponent_price")), 1)]
    assert exponent.price == Decimal(65000)
    offset = kraken[(KRAKEN.index(next(c for c in KRAKEN if c.id == "valid_offset_timestamp")), 1)]
    assert offset.event_time.replace(tzinfo=None) == TRADE_TIME.replace(tzinfo=None)


def test_kraken_message_of_unknown_type_is_rejected_whole(spark: SparkSession) -> None:
    rows = classified(spark, "kraken", [kraken_payload([kraken_item(1, {})], kind="delta")])
    (row,) = rows.values()
    assert (row.item_index, row.reason) == (-1, "invalid_message_type")
    assert row.detail == 'field type (message type) must be "snapshot" or "update", got delta'


def test_kraken_poison_elements_become_dead_letters_at_their_index(spark: SparkSession) -> None:
    payload = kraken_payload(
        [kraken_item(1, {}), "5", kraken_item(2, {"trade_id": '"x"'}), kraken_item(3, {}), kraken_item(4, {})]
    )
    exchange = get_exchange("kraken")
    parsed = classify(exchange.parse_bronze(bronze(spark, "k2.kraken.raw", [payload])), rules_for("kraken"))
    dead = to_dead_letters(parsed, "kraken", F.lit(INGESTED_AT)).collect()
    assert sorted((d.item_index, d.reason, bytes(d.raw_value)) for d in dead) == [
        (1, "invalid_trade_item", payload),
        (2, "invalid_trade_id", payload),
    ]
    trades = to_trades(parsed, "kraken", F.lit(INGESTED_AT)).collect()
    assert sorted(t.trade_id for t in trades) == ["1", "3", "4"]


# --- payloads in the exchange's own layout take the fast path; every other layout the VARIANT one ----
def spaced(payload: bytes) -> bytes:
    """The same JSON in another layout (a space after each colon): not canonical."""
    return payload.replace(b'":', b'": ')


BOTH_PATHS = {
    "binance": [
        binance_payload(1, {}),
        binance_payload(2, {"m": "true", "p": '"0.00001234"', "q": '"123456.5"'}),
        binance_payload(3, {"t": "999999999999999999"}),  # the largest id the layout admits
        binance_payload(4, {"p": '"abc"'}),  # of its type, so canonical, then rejected by Silver
        binance_payload(5, {"T": str(TRADE_MS + 86_400_000)}),  # canonical, a day ahead: future
    ],
    "kraken": [
        kraken_payload(
            [
                kraken_item(1, {}),
                kraken_item(2, {"side": '"sell"', "price": "0.04921234", "qty": "12.34567891", "ord_type": '"limit"'}),
                kraken_item(3, {"timestamp": '"2026-13-20T10:00:05Z"'}),  # canonical, but not a date
                kraken_item(4, {"price": "0"}),
            ]
        ),
        kraken_payload([kraken_item(5, {"qty": "123456789012345"})], kind="snapshot"),  # 15 digits
    ],
}


def number(text: str | None) -> Decimal | str | None:
    """A decimal text by its value (the paths may write 0.01000000 as 0.01), any other as itself."""
    try:
        return None if text is None else Decimal(text)
    except ArithmeticError:
        return text


@pytest.mark.parametrize("name", sorted(BOTH_PATHS))
def test_fast_and_variant_paths_agree(spark: SparkSession, name: str) -> None:
    """The canonical payloads are read from STRING values, the spaced ones as VARIANT: same trades,
    same values, same reasons and details."""
    canonical = importlib.import_module(f"k2.exchanges.{name}").CANONICAL
    payloads = BOTH_PATHS[name]
    assert all(re.search(canonical, p.decode()) for p in payloads)
    assert not any(re.search(canonical, spaced(p).decode()) for p in payloads)
    rows = classified(spark, name, payloads + [spaced(p) for p in payloads])

    def outcome(row: Row) -> tuple:
        money = [number(t) for t in (row.price_text, row.quantity_text)]
        return (
            row.item_index,
            row.exchange_symbol,
            row.trade_id,
            row.event_time,
            *money,
            row.taker_side,
            row.reason,
            row.detail,
        )

    fast = sorted((o, outcome(r)) for (o, _), r in rows.items() if o < len(payloads))
    slow = sorted((o - len(payloads), outcome(r)) for (o, _), r in rows.items() if o >= len(payloads))
    assert fast == slow
    assert {r.reason for r in rows.values()} > {None}  # valid trades and rejected ones, on both paths


# --- Gold: sums that cannot overflow, and do not fail if they still would ----------------------------
def test_silver_bounds_keep_a_bars_sums_inside_the_money_type() -> None:
    """Each trade is below 1e12 in price, quantity and quote amount: 1e8 of them sum below 1e20,
    the largest value DECIMAL(38,18) holds (20 integer digits)."""
    largest = Decimal(10) ** 20 - Decimal(10) ** -18
    for bound in (MAX_PRICE, MAX_QUANTITY, MAX_QUOTE_AMOUNT):
        assert (Decimal(bound) - Decimal(10) ** -18) * 10**8 <= largest


def test_gold_sums_past_the_money_type_give_null_not_a_failed_job(spark: SparkSession) -> None:
    """Trades Silver would never hold (quantity 9e19): the 1m bar's volumes overflow DECIMAL(38,18);
    try_sum makes them null, which Gold's quality gate reports, instead of an ANSI overflow error."""
    huge = Decimal("90000000000000000000")
    when = TRADE_TIME.replace(tzinfo=None)
    rows = [("binance", "BTC-USDT", str(i), when, Decimal(1), huge, huge, "buy" if i % 2 else "sell") for i in range(3)]
    trades = spark.createDataFrame(
        rows,
        "exchange string, symbol string, trade_id string, event_time timestamp, price decimal(38,18), "
        "quantity decimal(38,18), quote_amount decimal(38,18), taker_side string",
    )
    (bar,) = minute_bars(trades, F.lit(INGESTED_AT)).collect()
    assert (bar.volume_base, bar.volume_quote, bar.trade_count, bar.open) == (None, None, 3, Decimal(1))
    assert (bar.taker_buy_base, bar.taker_sell_base) == (huge, None)  # one buy fits, two sells do not
    minute = minute_bars(trades.where("trade_id = '0'"), F.lit(INGESTED_AT))
    doubled = minute.unionByName(minute.withColumn("bar_start", F.col("bar_start") + F.expr("INTERVAL 1 MINUTE")))
    (hour,) = roll_up(doubled, "1h", F.lit(INGESTED_AT)).collect()
    assert (hour.volume_base, hour.trade_count) == (None, 2)
