"""Gold's bars against hand-computed values, and every coarser width against aggregating the trades
directly (in Python, with exact decimals)."""

from __future__ import annotations

import datetime as dt
import random
from collections import defaultdict
from collections.abc import Iterator
from decimal import ROUND_HALF_UP, Decimal, localcontext

import pytest
from pyspark.sql import DataFrame, Row, SparkSession
from pyspark.sql import functions as F

from k2.lake.names import BAR_WIDTHS_S
from k2.lake.tables import gold_table
from k2.medallion.lakeio import held_locally
from k2.medallion.transforms.gold import bar_start, minute_bars, roll_up, vwap
from tests.spark.frames import MONEY_TYPE, TRADE_SCHEMA, UTC, at, micros, trade, utc

D = Decimal
COMPUTED_AT = at("2026-11-20T12:00:00")
BAR_STARTS = {  # event time -> expected bar start per width
    "2026-11-20T10:07:35.123456": {
        "1m": "2026-11-20T10:07:00",
        "5m": "2026-11-20T10:05:00",
        "1h": "2026-11-20T10:00:00",
        "1d": "2026-11-20T00:00:00",
    },
    "2026-11-20T10:05:00": {  # on a boundary: the bar it starts
        "1m": "2026-11-20T10:05:00",
        "5m": "2026-11-20T10:05:00",
        "1h": "2026-11-20T10:00:00",
        "1d": "2026-11-20T00:00:00",
    },
    "2026-11-20T23:59:59.999999": {
        "1m": "2026-11-20T23:59:00",
        "5m": "2026-11-20T23:55:00",
        "1h": "2026-11-20T23:00:00",
        "1d": "2026-11-20T00:00:00",
    },
    "1969-12-31T23:59:59.5": {  # before the epoch: floor, not truncation toward zero
        "1m": "1969-12-31T23:59:00",
        "5m": "1969-12-31T23:55:00",
        "1h": "1969-12-31T23:00:00",
        "1d": "1969-12-31T00:00:00",
    },
}


def test_every_bar_width_has_expected_starts() -> None:
    assert all(set(widths) == set(BAR_WIDTHS_S) for widths in BAR_STARTS.values())


@pytest.fixture(scope="module")
def starts(spark: SparkSession) -> list[Row]:
    df = spark.createDataFrame([(at(ts),) for ts in BAR_STARTS], "ts timestamp")
    return df.select("ts", *(bar_start(F.col("ts"), w).alias(w) for w in BAR_WIDTHS_S)).collect()


@pytest.mark.parametrize("width", BAR_WIDTHS_S)
def test_bar_start_floors_to_the_width(starts: list[Row], width: str) -> None:
    got = {utc(r.ts): utc(r[width]) for r in starts}
    assert got == {at(ts): at(widths[width]) for ts, widths in BAR_STARTS.items()}


# One minute of BTC-USDT, rows deliberately out of order: opens at id 12 (earliest, though its id
# is larger than 2's); closes at id 10, which follows id 9 at the same instant in numeric order
# (text order would put "10" first). 10:01:00 starts the next bar.
MINUTE_TRADES = [
    trade("9", "2026-11-20T10:00:50", "103", "2", "buy"),
    trade("2", "2026-11-20T10:00:10", "104", "0.5", "sell"),
    trade("13", "2026-11-20T10:01:00", "105", "0.3", "buy"),
    trade("10", "2026-11-20T10:00:50", "98", "1", "sell"),
    trade("12", "2026-11-20T10:00:05", "100", "1.5", "buy"),
    trade("1", "2026-11-20T10:00:20", "3000", "0.1", "sell", symbol="ETH-USDT"),
    trade("1", "2026-11-20T10:00:20", "3001", "0.2", "buy", symbol="ETH-USDT", exchange="kraken"),
]
Minutes = dict[tuple[str, str, dt.datetime], Row]  # (exchange, symbol, bar start) -> bar
MEASURES = ("open", "high", "low", "close", "volume_base", "volume_quote", "vwap", "trade_count")
TAKER = ("taker_buy_base", "taker_sell_base")
IDS = ("first_trade_id", "last_trade_id", "complete")


@pytest.fixture(scope="module")
def minutes(spark: SparkSession) -> Minutes:
    bars = minute_bars(spark.createDataFrame(MINUTE_TRADES, TRADE_SCHEMA), F.lit(COMPUTED_AT)).collect()
    return {(r.exchange, r.symbol, utc(r.bar_start)): r for r in bars}


def test_minute_bars_have_the_gold_columns(spark: SparkSession) -> None:
    bars = minute_bars(spark.createDataFrame(MINUTE_TRADES[:1], TRADE_SCHEMA), F.lit(COMPUTED_AT))
    assert bars.columns == [c.name for c in gold_table("1m").columns]
    types = dict(bars.dtypes)
    assert {types[m] for m in (*MEASURES, *TAKER) if m != "trade_count"} == {MONEY_TYPE}
    assert types["trade_count"] == "bigint"


def test_minute_bar_follows_event_time_then_numeric_trade_id(minutes: Minutes) -> None:
    assert set(minutes) == {
        ("binance", "BTC-USDT", at("2026-11-20T10:00:00")),
        ("binance", "BTC-USDT", at("2026-11-20T10:01:00")),
        ("binance", "ETH-USDT", at("2026-11-20T10:00:00")),
        ("kraken", "ETH-USDT", at("2026-11-20T10:00:00")),
    }
    bar = minutes[("binance", "BTC-USDT", at("2026-11-20T10:00:00"))]
    # volume_quote: 100 * 1.5 + 104 * 0.5 + 103 * 2 + 98 * 1 = 506 over volume_base 5
    assert tuple(bar[m] for m in MEASURES) == (D(100), D(104), D(98), D(98), D(5), D(506), D("101.2"), 4)
    assert (bar.taker_buy_base, bar.taker_sell_base) == (D("3.5"), D("1.5"))
    assert utc(bar.bar_end) == at("2026-11-20T10:01:00") and utc(bar.computed_at) == COMPUTED_AT


def test_single_trade_bars_keep_exchange_and_symbol_apart(minutes: Minutes) -> None:
    next_minute = minutes[("binance", "BTC-USDT", at("2026-11-20T10:01:00"))]
    assert tuple(next_minute[m] for m in MEASURES) == (*[D(105)] * 4, D("0.3"), D("31.5"), D(105), 1)
    assert (next_minute.taker_buy_base, next_minute.taker_sell_base) == (D("0.3"), D(0))
    eth = minutes[("binance", "ETH-USDT", at("2026-11-20T10:00:00"))]
    assert (eth.open, eth.volume_base, eth.taker_buy_base, eth.taker_sell_base) == (D(3000), D("0.1"), D(0), D("0.1"))
    assert minutes[("kraken", "ETH-USDT", at("2026-11-20T10:00:00"))].close == D(3001)


VWAPS = [  # volume_quote, volume_base, low, high -> vwap
    ("506", "5", "98", "104", "101.2"),
    ("1", "3", "0.3", "0.4", "0.333333333333"),  # 12 fractional digits
    ("2", "3", "0.6", "0.7", "0.666666666667"),  # rounded half up
    # one price with 13 decimals: rounding to 12 would leave [low, high]; the bound is kept
    ("0.1234567890124", "1", "0.1234567890124", "0.1234567890124", "0.1234567890124"),
    ("0.1234567890126", "1", "0.1234567890126", "0.1234567890126", "0.1234567890126"),
    # a quote volume too large for the precise division: the default decimal division
    ("100000000000000000", "3", "30000000000000000", "40000000000000000", "33333333333333333.333333"),
]


@pytest.fixture(scope="module")
def vwaps(spark: SparkSession) -> list[Decimal]:
    df = spark.createDataFrame(
        [(i, *case[:4]) for i, case in enumerate(VWAPS)], "i int, q string, b string, l string, h string"
    )
    money = [F.col(c).cast(MONEY_TYPE) for c in ("q", "b", "l", "h")]
    return [r[0] for r in df.orderBy("i").select(vwap(*money)).collect()]


@pytest.mark.parametrize("case", range(len(VWAPS)), ids=[f"{q}/{b}" for q, b, *_ in VWAPS])
def test_vwap_is_rounded_into_low_and_high(vwaps: list[Decimal], case: int) -> None:
    assert vwaps[case] == D(VWAPS[case][4])


def random_trades(seed: int = 7, n: int = 600) -> list[tuple]:
    """Trades over 26 hours around midnight: two symbols of one exchange, one of another; event
    times from a coarse grid so trades share instants, ids of several lengths in random order."""
    rng = random.Random(seed)
    start = at("2026-11-20T12:00:00")
    ids = rng.sample(range(5, 5000), n)
    streams = [("binance", "BTC-USDT"), ("binance", "ETH-USDT"), ("kraken", "BTC-USDT")]
    rows = []
    for trade_id in ids:
        exchange, symbol = rng.choice(streams)
        when = start + dt.timedelta(seconds=rng.randrange(0, 26 * 3600, 450))
        price = D(rng.randrange(9_000_00, 11_000_00)) / 100
        quantity = D(rng.randrange(1, 500_000)) / 100_000
        side = rng.choice(("buy", "sell"))
        rows.append((exchange, symbol, str(trade_id), when, price, quantity, price * quantity, side))
    return rows


def expected_bars(trades: list[tuple], seconds: int) -> dict[tuple, tuple]:
    """Bars aggregated straight from the trades, as Gold defines them."""
    groups: dict[tuple, list[tuple]] = defaultdict(list)
    for t in trades:
        start = micros(t[3]) // 1_000_000 // seconds * seconds
        groups[(t[0], t[1], dt.datetime.fromtimestamp(start, UTC))].append(t)
    bars = {}
    for key, rows in groups.items():
        ordered = sorted(rows, key=lambda t: (t[3], len(t[2]), t[2]))
        prices = [t[4] for t in rows]
        base, quote = sum(t[5] for t in rows), sum(t[6] for t in rows)
        with localcontext() as ctx:
            ctx.prec = 80
            mean = (quote / base).quantize(D("1e-12"), ROUND_HALF_UP)
        buy = sum((t[5] for t in rows if t[7] == "buy"), D(0))
        sell = sum((t[5] for t in rows if t[7] == "sell"), D(0))
        low, high = min(prices), max(prices)
        vw = min(max(mean, low), high)
        ids = sorted(int(t[2]) for t in rows)
        contiguous = ids[-1] - ids[0] + 1 == len(ids)
        bars[key] = (ordered[0][4], high, low, ordered[-1][4], base, quote, vw, len(rows), buy, sell)
        bars[key] += (str(ids[0]), str(ids[-1]), contiguous)
    return bars


@pytest.fixture(scope="module")
def random_minutes(spark: SparkSession) -> Iterator[tuple[list[tuple], DataFrame]]:
    trades = random_trades()
    minute = minute_bars(spark.createDataFrame(trades, TRADE_SCHEMA), F.lit(COMPUTED_AT)).cache()
    yield trades, minute
    minute.unpersist()


@pytest.mark.parametrize("width", BAR_WIDTHS_S)
def test_bars_equal_aggregating_the_trades_directly(random_minutes: tuple[list[tuple], DataFrame], width: str) -> None:
    trades, minute = random_minutes
    bars = minute if width == "1m" else roll_up(minute, width, F.lit(COMPUTED_AT))
    rows = bars.collect()
    got = {(r.exchange, r.symbol, utc(r.bar_start)): tuple(r[m] for m in (*MEASURES, *TAKER, *IDS)) for r in rows}
    expected = expected_bars(trades, BAR_WIDTHS_S[width])
    assert len(expected) > 2 and got == expected
    if width == "1m":  # single trades are complete, most minutes of random ids not
        assert {r.complete for r in rows} == {True, False}
    assert all(utc(r.bar_end) - utc(r.bar_start) == dt.timedelta(seconds=BAR_WIDTHS_S[width]) for r in rows)


def test_widths_held_in_one_job_are_each_widths_own_rows(
    spark: SparkSession, random_minutes: tuple[list[tuple], DataFrame]
) -> None:
    # Gold holds its coarser widths' bars with one Spark job (k2.medallion.lakeio.held_locally)
    _, minute = random_minutes
    frames = {width: roll_up(minute, width, F.lit(COMPUTED_AT)) for width in list(BAR_WIDTHS_S)[1:]}
    held = held_locally(spark, frames)
    assert list(held) == list(frames)
    for width, frame in frames.items():
        expected = sorted(tuple(r) for r in frame.collect())
        assert held[width].rows.num_rows == len(expected) > 0
        assert sorted(tuple(r) for r in held[width].frame.collect()) == expected
        assert held[width].frame.schema == frame.schema


# Ids 7..12 of BTC-USDT over three minutes, 10 missing; "x1" is an id that is no integer (ETH-USDT)
HOLE_TRADES = [
    trade("7", "2026-11-20T10:00:01", "100", "1", "buy"),
    trade("8", "2026-11-20T10:00:02", "100", "1", "buy"),
    trade("9", "2026-11-20T10:01:01", "100", "1", "buy"),
    trade("11", "2026-11-20T10:01:02", "100", "1", "buy"),
    trade("12", "2026-11-20T10:02:01", "100", "1", "buy"),
    trade("x1", "2026-11-20T10:00:01", "100", "1", "buy", symbol="ETH-USDT"),
]


def test_a_bar_is_complete_when_its_ids_are_contiguous(spark: SparkSession) -> None:
    minute = minute_bars(spark.createDataFrame(HOLE_TRADES, TRADE_SCHEMA), F.lit(COMPUTED_AT)).cache()
    got = {
        (r.symbol, utc(r.bar_start).minute): (r.first_trade_id, r.last_trade_id, r.complete) for r in minute.collect()
    }
    assert got == {
        ("BTC-USDT", 0): ("7", "8", True),
        ("BTC-USDT", 1): ("9", "11", False),  # 10 is missing inside the bar
        ("BTC-USDT", 2): ("12", "12", True),
        ("ETH-USDT", 0): ("x1", "x1", None),  # not an integer: not checked
    }
    five = {
        r.symbol: (r.first_trade_id, r.last_trade_id, r.complete)
        for r in roll_up(minute, "5m", F.lit(COMPUTED_AT)).collect()
    }
    assert five == {"BTC-USDT": ("7", "12", False), "ETH-USDT": ("x1", "x1", None)}
    filled = [*HOLE_TRADES, trade("10", "2026-11-20T10:01:01.5", "100", "1", "buy")]
    minute = minute_bars(spark.createDataFrame(filled, TRADE_SCHEMA), F.lit(COMPUTED_AT))
    assert [r.complete for r in roll_up(minute, "5m", F.lit(COMPUTED_AT)).orderBy("symbol").collect()] == [True, None]


def test_minutes_next_to_each_other_without_a_hole_roll_up_complete_but_a_hole_between_them_does_not(
    spark: SparkSession,
) -> None:
    """Each minute contiguous on its own, the hour not: the roll-up looks across its minutes."""
    trades = [trade("1", "2026-11-20T10:00:01", "1", "1", "buy"), trade("3", "2026-11-20T10:01:01", "1", "1", "buy")]
    minute = minute_bars(spark.createDataFrame(trades, TRADE_SCHEMA), F.lit(COMPUTED_AT))
    assert [r.complete for r in minute.collect()] == [True, True]
    assert [r.complete for r in roll_up(minute, "1h", F.lit(COMPUTED_AT)).collect()] == [False]
