"""OHLCV bars from trades, in DuckDB, by Gold's definition (``k2.medallion.transforms.gold``): open and
close follow event time with the numeric trade id as tie-break; first/last trade id and the
completeness flag as ``k2.medallion.transforms.gold.contiguous`` gives them; VWAP as Spark's decimal division
gives it (12 fractional digits, inside [low, high]), computed in Python on the few bars.

Bars are computed in two steps: each minute's partial aggregates, then their merge into bars of any
width. A query server keeps trades where they were judged and sends the partials only, and a bar
whose minutes come from different places (Silver, the server) merges them by the same SQL."""

from __future__ import annotations

import datetime as dt
from decimal import ROUND_HALF_UP, Context, Decimal
from typing import Any

import pyarrow as pa

from k2.exchanges.duckdb import lit
from k2.gaps.detect import NUMERIC_ID
from k2.lake.names import BAR_WIDTHS_S
from k2.query import duck

WIDTHS = dict(BAR_WIDTHS_S)
_CTX = Context(prec=200, rounding=ROUND_HALF_UP)
_LIMIT = Decimal(10) ** 20

# the trade columns PARTIALS_SQL reads
PARTIAL_INPUTS = ("exchange", "symbol", "event_time", "trade_id", "price", "quantity", "quote_amount", "taker_side")
MINUTE_US = 60_000_000  # the finest bar: every width is whole minutes, aligned to the epoch
# a minute's part of a bar, per exchange and symbol: what merging it with the bar's other minutes needs
PARTIALS_SQL = """
SELECT {keys}exchange, symbol, {minute} AS minute_us,
       min(event_time) AS open_time,
       first(trade_id ORDER BY event_time, length(trade_id), trade_id) AS open_id,
       first(price ORDER BY event_time, length(trade_id), trade_id) AS open,
       max(event_time) AS close_time,
       first(trade_id ORDER BY event_time DESC, length(trade_id) DESC, trade_id DESC) AS close_id,
       first(price ORDER BY event_time DESC, length(trade_id) DESC, trade_id DESC) AS close,
       max(price) AS high, min(price) AS low,
       sum(quantity) AS volume_base, sum(quote_amount) AS volume_quote, count(*) AS trade_count,
       sum(CASE WHEN taker_side = 'buy' THEN quantity ELSE 0 END) AS taker_buy_base,
       sum(CASE WHEN taker_side = 'sell' THEN quantity ELSE 0 END) AS taker_sell_base,
       first(trade_id ORDER BY length(trade_id), trade_id) AS lowest_id,
       first(trade_id ORDER BY length(trade_id) DESC, trade_id DESC) AS highest_id,
       bool_and(regexp_matches(trade_id, {numeric})) AS numeric_ids
FROM {trades} GROUP BY ALL
"""
# bars of {us} microseconds from the partials of their minutes: open and close follow event time with
# the numeric trade id as tie-break, as within a minute
MERGE_SQL = """
SELECT exchange, symbol, (minute_us // {us}) * {us} AS start_us,
       first(open ORDER BY open_time, length(open_id), open_id) AS open,
       max(high) AS high, min(low) AS low,
       first(close ORDER BY close_time DESC, length(close_id) DESC, close_id DESC) AS close,
       sum(volume_base) AS volume_base, sum(volume_quote) AS volume_quote,
       CAST(sum(trade_count) AS BIGINT) AS trade_count,
       sum(taker_buy_base) AS taker_buy_base, sum(taker_sell_base) AS taker_sell_base,
       first(lowest_id ORDER BY length(lowest_id), lowest_id) AS first_trade_id,
       first(highest_id ORDER BY length(highest_id) DESC, highest_id DESC) AS last_trade_id,
       CASE WHEN bool_and(numeric_ids)
            THEN CAST(last_trade_id AS BIGINT) - CAST(first_trade_id AS BIGINT) + 1 = sum(trade_count) END AS complete
FROM {partials} GROUP BY ALL
"""


def minute_of(column: str) -> str:
    """SQL: the start of the minute a time lies in, in microseconds since the epoch."""
    return f"(epoch_us({column}) // {MINUTE_US}) * {MINUTE_US}"


def partials_sql(trades: str, keys: tuple[str, ...] = ()) -> str:
    """SQL: the minute partials (PARTIALS_SQL) of the trades in the relation ``trades``; ``keys``:
    columns of it to group by first as well (they lead the result's columns)."""
    leading = "".join(f"{key}, " for key in keys)
    return PARTIALS_SQL.format(trades=trades, keys=leading, minute=minute_of("event_time"), numeric=lit(NUMERIC_ID))


def vwap(quote: Decimal | None, base: Decimal | None, low: Decimal, high: Decimal) -> Decimal | None:
    """k2.medallion.transforms.gold.vwap in Python: volume_quote / volume_base rounded half up to 12
    digits (6 when the volumes are past decimal(34,18) / decimal(28,10)), kept inside [low, high]."""
    value = None
    if quote is not None and base is not None:
        narrow = base.quantize(Decimal("1e-10"), context=_CTX)
        if abs(quote) < Decimal(10) ** 16 and abs(narrow) < Decimal(10) ** 18 and narrow:
            value = _CTX.divide(quote, narrow).quantize(Decimal("1e-12"), context=_CTX)
        elif base:
            value = _CTX.divide(quote, base).quantize(Decimal("1e-6"), context=_CTX)
        if value is not None and abs(value) >= _LIMIT:
            value = None
    # Spark's greatest and least skip nulls
    value = low if value is None else max(value, low)
    return min(value, high)


def partials(trades: pa.Table) -> pa.Table:
    """The minute partials of ``trades`` (exchange, symbol, event time, trade id, price, quantity,
    quote amount, taker side)."""
    with duck.cursor() as con:
        con.register("_trades", trades)
        return con.sql(partials_sql("_trades")).to_arrow_table()


def merge_bars(minutes: pa.Table, interval: str) -> list[dict[str, Any]]:
    """The bars of ``interval`` from minute partials (each minute's at most once)."""
    width = WIDTHS[interval]
    with duck.cursor() as con:
        con.register("_partials", minutes)
        rows = con.sql(MERGE_SQL.format(us=width * 1_000_000, partials="_partials")).to_arrow_table().to_pylist()
    out = []
    for r in rows:
        start = dt.datetime(1970, 1, 1, tzinfo=dt.UTC) + dt.timedelta(microseconds=r.pop("start_us"))
        r |= {"bar_start": start, "bar_end": start + dt.timedelta(seconds=width)}
        r["vwap"] = vwap(r["volume_quote"], r["volume_base"], r["low"], r["high"])
        out.append(r)
    return out


def compute_bars(trades: pa.Table, interval: str) -> list[dict[str, Any]]:
    """The bars of ``interval`` of ``trades``: their minutes' partials, merged."""
    return merge_bars(partials(trades), interval)
