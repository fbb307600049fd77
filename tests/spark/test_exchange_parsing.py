"""Every registered exchange: its own rendered payloads, through Bronze and ``parse_bronze``, come
back as the trades that were rendered; unreadable payloads come back as one rejected row each."""

from __future__ import annotations

from decimal import Decimal

import pytest
from pyspark.sql import Row, SparkSession

from k2.exchanges import RestTrade, TradeBatch, available, get_exchange
from k2.exchanges.spark import CANDIDATE_COLUMNS
from k2.feeds.simulator import TradeSimulator
from k2.medallion.transforms.silver import SilverRules, classify
from tests.spark.frames import CANDIDATE_TYPES, TOPIC, at, bronze_rows, micros, utc

EXCHANGES = available()
KAFKA_TS = at("2026-11-20T10:00:40")
START_US = micros(at("2026-11-20T10:00:00.123456"))
RoundTrip = tuple[str, TradeBatch, list[bytes], list[Row]]  # exchange, rendered batch, payloads, classified rows


def sample_batch(name: str) -> TradeBatch:
    """Three trades of each of the exchange's instruments, on its price and quantity grids, in
    messages as large as the exchange allows (one symbol per message)."""
    exchange = get_exchange(name)
    columns: dict[str, list] = {k: [] for k in ("symbol", "trade_id", "price", "qty", "event_time_us", "is_buy")}
    sizes: list[int] = []
    for s, instrument in enumerate(exchange.instruments.values()):
        for k in range(3):
            n = len(columns["symbol"])
            columns["symbol"].append(instrument.symbol)
            columns["trade_id"].append(9 + 10**k * (s + 1))  # ids of different lengths
            columns["price"].append(f"{instrument.reference_price * (1 + k / 997):.{instrument.price_decimals}f}")
            columns["qty"].append(f"{instrument.typical_qty * (k + 1) / 3:.{instrument.qty_decimals}f}")
            columns["event_time_us"].append(START_US + n * 1_000_357)  # microseconds that are not whole ms
            columns["is_buy"].append(n % 2 == 0)
        per_message = exchange.max_trades_per_message
        sizes += [min(per_message, 3 - i) for i in range(0, 3, per_message)]
    return TradeBatch(**columns, sizes=sizes, snapshot=frozenset({0}))


@pytest.fixture(scope="module", params=EXCHANGES)
def round_trip(request: pytest.FixtureRequest, spark: SparkSession) -> RoundTrip:
    """The candidates, with Silver's verdict and typed values alongside (one Spark job)."""
    name = request.param
    exchange = get_exchange(name)
    batch = sample_batch(name)
    payloads = exchange.render(batch)
    parsed = exchange.parse_bronze(bronze_rows(spark, payloads, KAFKA_TS))
    assert parsed.columns == list(CANDIDATE_COLUMNS)
    assert dict(parsed.dtypes) == CANDIDATE_TYPES  # the shape the Silver tests build by hand
    rules = SilverRules(name, {s: exchange.normalise_symbol(s) for s in exchange.instruments})
    rows = sorted(classify(parsed, rules).collect(), key=lambda r: (r.kafka_offset, r.item_index))
    return name, batch, payloads, rows


def test_one_candidate_per_rendered_trade_in_message_order(round_trip: RoundTrip) -> None:
    _, batch, payloads, rows = round_trip
    expected = [(message, item) for message, size in enumerate(batch.sizes) for item in range(size)]
    assert [(r.kafka_offset, r.item_index) for r in rows] == expected
    assert len(payloads) == len(batch.sizes)
    assert all(r.parse_error is None and r.parse_detail is None for r in rows)
    assert all((r.kafka_topic, r.kafka_partition, utc(r.kafka_timestamp)) == (TOPIC, 0, KAFKA_TS) for r in rows)
    assert all(bytes(r.value) == payloads[r.kafka_offset] for r in rows)


def test_rendered_values_come_back(round_trip: RoundTrip) -> None:
    _, batch, _, rows = round_trip
    got = [(r.exchange_symbol, r.trade_id, Decimal(r.price_text), Decimal(r.quantity_text), r.taker_side) for r in rows]
    sides = ["buy" if b else "sell" for b in batch.is_buy]
    prices, quantities = [Decimal(p) for p in batch.price], [Decimal(q) for q in batch.qty]
    assert got == list(zip(batch.symbol, map(str, batch.trade_id), prices, quantities, sides, strict=True))


def test_event_times_agree_with_the_exchange_reading_of_the_payload(round_trip: RoundTrip) -> None:
    name, batch, payloads, rows = round_trip
    parsed = [micros(r.event_time) for r in rows]
    assert parsed == [us for p in payloads for us in get_exchange(name).event_times_us(p)]
    # at the exchange's own precision: rendered microseconds, or milliseconds of them
    assert all(0 <= rendered - us < 1000 for rendered, us in zip(batch.event_time_us, parsed, strict=True))


def test_binance_keeps_the_exact_decimal_text(spark: SparkSession) -> None:
    """Binance sends prices and quantities as JSON strings: their text passes through unchanged."""
    batch = TradeBatch(["BTCUSDT"], [1], ["65000.10"], ["0.00100000"], [START_US], [True], [1])
    parsed = get_exchange("binance").parse_bronze(bronze_rows(spark, get_exchange("binance").render(batch), KAFKA_TS))
    assert parsed.select("price_text", "quantity_text").first() == ("65000.10", "0.00100000")


def test_kraken_keeps_every_digit_of_its_json_numbers(spark: SparkSession) -> None:
    """Kraken sends prices and quantities as JSON numbers: all their digits come back (read as STRING,
    from_json would round them through a double: 99999999.99999999 -> 9.999999999999999E7)."""
    batch = TradeBatch(["BTC/USD"], [1], ["0.123456789012345678"], ["99999999.99999999"], [START_US], [True], [1])
    parsed = get_exchange("kraken").parse_bronze(bronze_rows(spark, get_exchange("kraken").render(batch), KAFKA_TS))
    row = parsed.first()
    assert (Decimal(row.price_text), Decimal(row.quantity_text)) == (
        Decimal("0.123456789012345678"),
        Decimal("99999999.99999999"),
    )


@pytest.mark.parametrize("name", EXCHANGES)
def test_simulated_messages_are_all_valid_silver_trades(spark: SparkSession, name: str) -> None:
    """The simulator's clean output (the first messages of a batch): every trade it counted passes
    Silver's checks and carries the message's Kafka key as its symbol."""
    exchange = get_exchange(name)
    start_us = micros(KAFKA_TS) - 60_000_000
    sim = TradeSimulator(exchange, list(exchange.default_symbols), seed=5, rate=50, start_us=start_us)
    messages = sim.next_batch()
    payloads, counts, keys = messages.payloads[:300], messages.trade_counts[:300], messages.keys[:300]
    rules = SilverRules(name, {s: exchange.normalise_symbol(s) for s in exchange.default_symbols})
    parsed = exchange.parse_bronze(bronze_rows(spark, payloads, KAFKA_TS))
    rows = classify(parsed, rules).select("kafka_offset", "exchange_symbol", "reason").collect()
    assert len(rows) == sum(counts) and {r.reason for r in rows} == {None}
    assert all(r.exchange_symbol == keys[r.kafka_offset].decode() for r in rows)


@pytest.mark.parametrize("name", EXCHANGES)
def test_repaired_trades_are_silver_trades_with_their_rest_values(spark: SparkSession, name: str) -> None:
    """What gap repair publishes (a REST trade rendered as the live message) passes Silver as the trade."""
    exchange = get_exchange(name)
    symbol = exchange.default_symbols[0]
    start_us = micros(KAFKA_TS) - 60_000_000  # whole milliseconds: Binance's REST history has no finer
    trades = [
        RestTrade(7 + 10**k, f"65000.{k}5", f"0.0{k}125", start_us + k * 1000, k % 2 == 0, order_type="limit")
        for k in range(4)
    ]
    payloads = [exchange.render_rest(symbol, t) for t in trades]
    parsed = exchange.parse_bronze(bronze_rows(spark, payloads, KAFKA_TS))
    rows = sorted(
        classify(parsed, SilverRules(name, {symbol: exchange.normalise_symbol(symbol)})).collect(),
        key=lambda r: r.kafka_offset,
    )
    assert [
        (r.reason, r.exchange_symbol, r.trade_id, r.price, r.quantity, r.taker_side, micros(r.event_time)) for r in rows
    ] == [
        (
            None,
            symbol,
            str(t.trade_id),
            Decimal(t.price),
            Decimal(t.qty),
            "buy" if t.is_buy else "sell",
            t.event_time_us,
        )
        for t in trades
    ]


def test_silver_types_the_round_tripped_values_exactly(round_trip: RoundTrip) -> None:
    name, batch, _, rows = round_trip
    exchange = get_exchange(name)
    assert all(r.reason is None for r in rows)
    got = [(r.symbol, r.price, r.quantity) for r in rows]
    expected = [
        (exchange.normalise_symbol(s), Decimal(p), Decimal(q))
        for s, p, q in zip(batch.symbol, batch.price, batch.qty, strict=True)
    ]
    assert got == expected


# --- payloads that are not trades: one row per message, item_index -1, nothing but the reason -----
def malformed_cases(name: str) -> dict[str, tuple[bytes | None, str]]:
    """case -> (payload, parse_error), for every exchange alike: damage to its own payload, or JSON
    that is some other message (another exchange's trade among them)."""
    exchange = get_exchange(name)
    good = exchange.render(sample_batch(name))[0]
    other = next(e for e in EXCHANGES if e != name)
    cases: dict[str, tuple[bytes | None, str]] = {
        "empty": (b"", "empty_payload"),
        "no_value": (None, "empty_payload"),
        "not_utf8": (b"\xff\xfe" + good[2:], "not_utf8"),
        "truncated": (good[: len(good) // 2], "malformed_json"),
        "not_json": (b"hello", "malformed_json"),
        "control_message": (b'{"result":null,"id":1}', "not_a_trade"),
        "other_exchange_trade": (get_exchange(other).render(sample_batch(other))[0], "not_a_trade"),
    }
    specific = {
        "binance": {
            "other_event_type": (b'{"stream":"btcusdt@aggTrade","data":{"e":"aggTrade","s":"BTCUSDT"}}', "not_a_trade")
        },
        "kraken": {
            "heartbeat": (b'{"channel":"heartbeat"}', "not_a_trade"),
            "status": (b'{"channel":"status","type":"update","data":[{"system":"online"}]}', "not_a_trade"),
            "no_trades": (b'{"channel":"trade","type":"update","data":[]}', "no_trades"),
        },
    }
    return cases | specific.get(name, {})


MALFORMED = [(name, case) for name in EXCHANGES for case in malformed_cases(name)]
DETAILS = {
    "empty_payload": "the Kafka record has no value",
    "not_utf8": "the payload is not valid UTF-8",
    "malformed_json": "the payload is not valid JSON (truncated or garbled)",
}


@pytest.fixture(scope="module")
def rejected(spark: SparkSession) -> dict[tuple[str, str], list[Row]]:
    """(exchange, case) -> its parsed rows; one frame per exchange."""
    out: dict[tuple[str, str], list[Row]] = {}
    for name in EXCHANGES:
        cases = list(malformed_cases(name).items())
        parsed = get_exchange(name).parse_bronze(bronze_rows(spark, [p for _, (p, _) in cases], KAFKA_TS)).collect()
        for offset, (case, _) in enumerate(cases):
            out[(name, case)] = [r for r in parsed if r.kafka_offset == offset]
    return out


@pytest.mark.parametrize(("name", "case"), MALFORMED, ids=[f"{n}-{c}" for n, c in MALFORMED])
def test_unreadable_payloads_are_rejected_whole(
    rejected: dict[tuple[str, str], list[Row]], name: str, case: str
) -> None:
    payload, reason = malformed_cases(name)[case]
    (row,) = rejected[(name, case)]
    assert (row.parse_error, row.item_index) == (reason, -1)
    trade = (row.exchange_symbol, row.trade_id, row.event_time, row.price_text, row.quantity_text, row.taker_side)
    assert trade == (None,) * 6
    detail = DETAILS[reason] if reason in DETAILS else f"not a trade message: {(payload or b'').decode()[:200]}"
    assert row.parse_detail == detail
    assert (None if row.value is None else bytes(row.value)) == payload
