"""OHLCV bars from trades, in DuckDB, by Gold's definition (``k2.medallion.transforms.gold``): open and
close follow event time with the numeric trade id as tie-break; first/last trade id and the
completeness flag as ``k2.medallion.transforms.gold.contiguous`` gives them; VWAP as Spark's decimal division
gives it (12 fractional digits, inside [low, high]), computed in Python on the few bars."""

from __future__ import annotations

import datetime as dt
from decimal import ROUND_HALF_UP, Context, Decimal
from typing import Any

import pyarrow as pa

from k2.gaps.detect import NUMERIC_ID
from k2.lake.names import BAR_WIDTHS_S

WIDTHS = dict(BAR_WIDTHS_S)
_CTX = Context(prec=200, rounding=ROUND_HALF_UP)
_LIMIT = Decimal(10) ** 20

BARS_SQL = """
SELECT exchange, symbol, (epoch_us(event_time) // {us}) * {us} AS start_us,
       first(price ORDER BY event_time, length(trade_id), trade_id) AS open,
       max(price) AS high, min(price) AS low,
       first(price ORDER BY event_time DESC, length(trade_id) DESC, trade_id DESC) AS close,
       sum(quantity) AS volume_base, sum(quote_amount) AS volume_quote, count(*) AS trade_count,
       sum(CASE WHEN taker_side = 'buy' THEN quantity ELSE 0 END) AS taker_buy_base,
       sum(CASE WHEN taker_side = 'sell' THEN quantity ELSE 0 END) AS taker_sell_base,
       first(trade_id ORDER BY length(trade_id), trade_id) AS first_trade_id,
       first(trade_id ORDER BY length(trade_id) DESC, trade_id DESC) AS last_trade_id,
       CASE WHEN bool_and(regexp_matches(trade_id, '{numeric}'))
            THEN CAST(last_trade_id AS BIGINT) - CAST(first_trade_id AS BIGINT) + 1 = count(*) END AS complete
FROM trades GROUP BY ALL
"""


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


def compute_bars(trades: pa.Table, interval: str) -> list[dict[str, Any]]:
    import duckdb

    width = WIDTHS[interval]
    with duckdb.connect() as con:
        con.register("trades", trades)
        sql = BARS_SQL.format(us=width * 1_000_000, numeric=NUMERIC_ID)
        rows = con.sql(sql).to_arrow_table().to_pylist()
    out = []
    for r in rows:
        start = dt.datetime(1970, 1, 1, tzinfo=dt.UTC) + dt.timedelta(microseconds=r.pop("start_us"))
        r |= {"bar_start": start, "bar_end": start + dt.timedelta(seconds=width)}
        r["vwap"] = vwap(r["volume_quote"], r["volume_base"], r["low"], r["high"])
        out.append(r)
    return out
