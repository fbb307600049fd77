"""The Python API of ``k2.query``: a time window in, Arrow tables out. An answer Kafka could not
complete (the broker out of reach) holds what the lake holds and warns ``PartialAnswer``."""

from __future__ import annotations

import datetime as dt
import re
import warnings

import pyarrow as pa

from k2.errors import K2Error
from k2.exchanges import available
from k2.query import hybrid
from k2.query.bars import WIDTHS
from k2.query.partial import partial_notes
from k2.settings import Settings, load_settings

_DURATION = re.compile(r"^(\d+)(s|m|h|d)$")
VIEWS = ("trades", "bars_1m", "bars_5m", "bars_1h", "bars_1d")
_UNITS = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days"}


def _moment(text: str | dt.datetime) -> dt.datetime:
    if isinstance(text, dt.datetime):
        return text if text.tzinfo else text.replace(tzinfo=dt.UTC)
    try:
        moment = dt.datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise K2Error(f"{text!r} is not a time", "give an ISO 8601 time, e.g. 2026-11-30T10:00:00Z.") from None
    return moment if moment.tzinfo else moment.replace(tzinfo=dt.UTC)


def window(
    since: str | None = None, start: str | dt.datetime | None = None, end: str | dt.datetime | None = None
) -> tuple[dt.datetime, dt.datetime]:
    """[start, end) from either ``since`` (a duration back from now: 60s, 15m, 1h, 2d) or ``start``
    (and optionally ``end``, default now)."""
    stop = _moment(end) if end else dt.datetime.now(dt.UTC)
    if since:
        match = _DURATION.match(since)
        if not match:
            raise K2Error(f"{since!r} is not a duration", "use a number and a unit: 60s, 15m, 1h or 2d.")
        return stop - dt.timedelta(**{_UNITS[match[2]]: int(match[1])}), stop
    if not start:
        raise K2Error("no time window given", "pass since (a duration, e.g. since='60s') or start (a time).")
    begin = _moment(start)
    if begin >= stop:
        raise K2Error(
            f"the window is empty: {begin.isoformat()} is not before {stop.isoformat()}", "give a start before the end."
        )
    return begin, stop


def _exchanges(exchanges: list[str] | None) -> list[str]:
    names = exchanges or available()
    unknown = sorted(set(names) - set(available()))
    if unknown:
        raise K2Error(f"unknown exchange(s) {', '.join(unknown)}", f"use one of: {', '.join(available())}.")
    return names


def trades(
    exchanges: list[str] | None = None,
    symbols: list[str] | None = None,
    *,
    since: str | None = None,
    start: str | dt.datetime | None = None,
    end: str | dt.datetime | None = None,
    settings: Settings | None = None,
) -> pa.Table:
    """Trades with an event time in the window (symbols as the exchange spells them or BASE-QUOTE)."""
    begin, stop = window(since, start, end)
    return _trades(settings or load_settings(), _exchanges(exchanges), symbols or None, begin, stop)


def bars(
    interval: str,
    exchanges: list[str] | None = None,
    symbols: list[str] | None = None,
    *,
    since: str | None = None,
    start: str | dt.datetime | None = None,
    end: str | dt.datetime | None = None,
    settings: Settings | None = None,
) -> pa.Table:
    """OHLCV bars (1m, 5m, 1h, 1d) starting in the window; the current bar is computed on the fly."""
    if interval not in WIDTHS:
        raise K2Error(f"no bar interval {interval!r}", f"use one of: {', '.join(WIDTHS)}.")
    begin, stop = window(since, start, end)
    symbols = [_normalised(s) for s in symbols] if symbols else None
    return _bars(settings or load_settings(), interval, _exchanges(exchanges), symbols, begin, stop)


def _served(settings: Settings, request: dict) -> pa.Table | None:
    """The query server's answer (``k2 query serve``, which `k2 up` starts), or None without one."""
    from k2.query.live.protocol import ask

    answer = ask(settings, request)
    if answer is None:
        from k2.runtime.stack import revive_query_server

        revive_query_server(settings)  # when `k2 up` started one that has died
        return None
    return answer[0]


def _trades(settings: Settings, exchanges: list[str], symbols: list[str] | None, begin, stop) -> pa.Table:
    request = {"op": "trades", "exchanges": exchanges, "symbols": symbols, "start": begin, "end": stop}
    served = _served(settings, request)
    return _warned(served if served is not None else hybrid.trades(settings, exchanges, symbols, begin, stop))


def _bars(settings: Settings, interval: str, exchanges: list[str], symbols: list[str] | None, begin, stop):
    request = {"op": "bars", "interval": interval, "exchanges": exchanges, "symbols": symbols}
    served = _served(settings, request | {"start": begin, "end": stop})
    return _warned(served if served is not None else hybrid.bars(settings, interval, exchanges, symbols, begin, stop))


def _warned(table: pa.Table) -> pa.Table:
    """Warns what a partial answer lacks (``k2.query.partial.PartialAnswer``, one warning per note)."""
    for note in partial_notes(table):
        warnings.warn(note, stacklevel=4)
    return table


def _normalised(symbol: str) -> str:
    """Gold keys bars by K2's symbol (BTC-USDT): an exchange's spelling is translated."""
    from k2.exchanges import get_exchange

    if "-" in symbol:
        return symbol
    for name in available():
        try:
            return get_exchange(name).normalise_symbol(symbol)
        except K2Error:
            continue
    return symbol


def connect(
    exchanges: list[str] | None = None,
    symbols: list[str] | None = None,
    *,
    since: str | None = None,
    start: str | dt.datetime | None = None,
    end: str | dt.datetime | None = None,
    settings: Settings | None = None,
    views: tuple[str, ...] = VIEWS,
):  # -> duckdb.DuckDBPyConnection
    """A DuckDB connection with the window's hybrid layers as views (``views``, default all of
    trades, bars_1m, bars_5m, bars_1h, bars_1d)."""
    import duckdb

    settings = settings or load_settings()
    begin, stop = window(since, start, end)
    con = duckdb.connect()
    con.execute("SET TimeZone = 'UTC'")
    names = _exchanges(exchanges)
    tables = {}
    if "trades" in views:
        tables["trades"] = _trades(settings, names, symbols or None, begin, stop)
    bar_symbols = [_normalised(s) for s in symbols] if symbols else None
    for interval in WIDTHS:
        if f"bars_{interval}" in views:
            tables[f"bars_{interval}"] = _bars(settings, interval, names, bar_symbols, begin, stop)
    for name, table in tables.items():
        con.register(f"_{name}", table)
        con.execute(f"CREATE VIEW {name} AS SELECT * FROM _{name}")
    return con


def sql(query: str, exchanges: list[str] | None = None, symbols: list[str] | None = None, **window_args) -> pa.Table:
    """Runs SQL over the window's hybrid layers (see ``connect``)."""
    import duckdb

    used = tuple(v for v in VIEWS if re.search(rf"\b{v}\b", query, re.IGNORECASE))
    if not used:
        raise K2Error("the query reads none of K2's views", f"select from one of: {', '.join(VIEWS)}.")
    con = connect(exchanges, symbols, views=used, **window_args)
    try:
        result = con.sql(query)
        if result is None:
            raise K2Error("the statement returns no rows", "`k2 query sql` runs queries: SELECT ... FROM trades.")
        return result.to_arrow_table()
    except duckdb.Error as exc:
        raise K2Error(f"the query failed: {exc}", "views are trades, bars_1m, bars_5m, bars_1h, bars_1d.") from None
    finally:
        con.close()
