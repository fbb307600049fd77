"""k2.query's pure parts: windows, coverage gaps, the key filter, bars by Gold's definition, VWAP as
Spark divides, and the output formats."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal as D

import duckdb
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from k2.errors import K2Error
from k2.query.api import window
from k2.query.bars import compute_bars, merge_bars, partials, vwap
from k2.query.hybrid import TRADES_SCHEMA, Fresh, _combined, _sorted
from k2.query.output import write
from k2.query.sources import FAR, KeyFilter, gaps

UTC = dt.UTC
T = dt.datetime(2026, 11, 20, 10, 0, tzinfo=UTC)


def test_window_from_a_duration_or_times() -> None:
    start, end = window("90s", end="2026-11-20T10:00:00Z")
    assert (start, end) == (T - dt.timedelta(seconds=90), T)
    assert window(start="2026-11-20T09:00:00", end=T) == (T - dt.timedelta(hours=1), T)


@pytest.mark.parametrize(
    ("args", "cause"),
    [
        ({"since": "5x"}, "is not a duration"),
        ({}, "no time window"),
        ({"start": "yesterday"}, "is not a time"),
        ({"start": "2026-11-20T11:00:00Z", "end": "2026-11-20T10:00:00Z"}, "the window is empty"),
    ],
)
def test_bad_windows_name_the_cause_and_fix(args: dict, cause: str) -> None:
    with pytest.raises(K2Error) as info:
        window(**args)
    assert cause in info.value.cause and info.value.fix


def test_gaps_are_what_the_ledger_has_not_covered() -> None:
    hour = dt.timedelta(hours=1)
    covered = [(T, T + hour), (T + 2 * hour, T + 3 * hour), (T + hour, T + 90 * dt.timedelta(minutes=1))]
    out = gaps(covered)
    assert out[1:] == [(T + 90 * dt.timedelta(minutes=1), T + 2 * hour), (T + 3 * hour, FAR)]
    assert out[0] == (dt.datetime(1970, 1, 1, tzinfo=UTC), T)  # before the first range: never covered


def test_key_filter_keeps_wanted_and_unknown_keys() -> None:
    keys = KeyFilter(frozenset({b"BTCUSDT"}), frozenset({b"BTCUSDT", b"ETHUSDT"}))
    column = pa.array([b"BTCUSDT", b"ETHUSDT", b"", None, b"DOGEUSDT"], pa.binary())
    assert [keys.admits(k) for k in (b"BTCUSDT", b"ETHUSDT", None)] == [True, False, True]
    with duckdb.connect() as con:  # as DuckDB's Bronze scan applies it
        con.register("records", pa.table({"key": column}))
        assert [r[0] for r in con.sql(f"SELECT {keys.sql('key')} FROM records").fetchall()] == [
            True,
            False,
            True,
            True,
            True,
        ]


def test_vwap_rounds_half_up_to_12_digits_inside_low_and_high() -> None:
    assert vwap(D("200"), D("3"), D("60"), D("70")) == D("66.666666666667")
    assert vwap(D("10"), D("1"), D("11"), D("12")) == D("11")  # clamped to low
    assert vwap(None, None, D("1"), D("2")) == D("1")  # Spark's greatest skips the null


def trade(t: str, seconds: float, price: str, qty: str, side: str) -> dict:
    p, q = D(price), D(qty)
    return {
        "exchange": "binance",
        "symbol": "BTC-USDT",
        "exchange_symbol": "BTCUSDT",
        "trade_id": t,
        "event_time": T + dt.timedelta(seconds=seconds),
        "price": p,
        "quantity": q,
        "quote_amount": p * q,
        "taker_side": side,
    }


def test_bars_follow_event_time_then_numeric_trade_id() -> None:
    rows = [
        trade("10", 5, "100", "1", "buy"),
        trade("9", 5, "101", "2", "sell"),  # same time, shorter id: opens the bar
        trade("11", 59.999999, "99", "1", "sell"),  # closes minute 0
        trade("12", 60, "105", "1", "buy"),  # minute 1
    ]
    table = pa.Table.from_pylist(rows, schema=TRADES_SCHEMA.remove(TRADES_SCHEMA.names.index("kafka_topic")))
    bars = {b["bar_start"]: b for b in compute_bars(table, "1m")}
    first = bars[T]
    assert (first["open"], first["close"], first["high"], first["low"]) == (D(101), D(99), D(101), D(99))
    assert (first["trade_count"], first["volume_base"], first["taker_buy_base"], first["taker_sell_base"]) == (
        3,
        D(4),
        D(1),
        D(3),
    )
    assert first["vwap"] == D("100.25")  # (100 + 202 + 99) / 4 and first["bar_end"] == T + dt.timedelta(minutes=1)
    (hour,) = compute_bars(table, "1h")
    assert (hour["open"], hour["close"], hour["trade_count"]) == (D(101), D(105), 4)


def test_bars_merged_from_parts_of_their_minutes_equal_bars_of_all_their_trades() -> None:
    """A bar whose minutes come from different places (Silver, a query server's store), or whose
    minute is split between two disjoint sets of trades, merges to the bar of all its trades."""
    rows = [
        trade("10", 5, "100", "1", "buy"),
        trade("9", 5, "101", "2", "sell"),
        trade("11", 59.5, "99", "1", "sell"),
        trade("12", 60, "105", "1", "buy"),
        trade("13", 61, "104", "3", "sell"),
        trade("x", 130, "103", "1", "buy"),  # not numeric: the bars it is in cannot be complete
        trade("15", 3000, "102", "1", "buy"),
    ]
    table = pa.Table.from_pylist(rows, schema=TRADES_SCHEMA.remove(TRADES_SCHEMA.names.index("kafka_topic")))

    def merged(interval: str, *parts: pa.Table) -> list[dict]:
        bars = merge_bars(pa.concat_tables([partials(part) for part in parts]), interval)
        return sorted(bars, key=lambda bar: (bar["symbol"], bar["bar_start"]))

    for interval in ("1m", "5m", "1h"):
        whole = merged(interval, table)
        assert whole == sorted(compute_bars(table, interval), key=lambda bar: (bar["symbol"], bar["bar_start"]))
        assert merged(interval, table.slice(0, 3), table.slice(3)) == whole, interval  # minutes apart
        assert merged(interval, table.take([0, 2, 4]), table.take([1, 3, 5, 6])) == whole, interval  # minutes split
    hour = {b["bar_start"]: b for b in compute_bars(table, "1h")}[T]
    assert (hour["open"], hour["close"], hour["trade_count"], hour["complete"]) == (D(101), D(102), 7, None)
    (first,) = [b for b in compute_bars(table, "1m") if b["bar_start"] == T]
    assert (first["first_trade_id"], first["last_trade_id"], first["complete"]) == ("9", "11", True)


def test_fresh_minutes_merge_with_silver_dropping_copies_of_its_trades() -> None:
    """Bars over Silver's trades and fresh minute partials: a minute whose fresh trades include a
    (mis-stamped) copy of a Silver trade is aggregated from its trades with that copy dropped, as the
    next batch drops it; the other fresh minutes are taken as they are, beside Silver's trades of the
    same minute (ids above Silver's highest: no copy of one of its trades)."""
    silver = pa.Table.from_pylist(
        [trade("1", 5, "100", "1", "buy"), trade("2", 50, "101", "1", "sell")], schema=TRADES_SCHEMA
    )
    fresh = pa.Table.from_pylist(
        [
            trade("3", 55, "102", "1", "buy"),  # beside Silver's trades in minute 0
            trade("4", 70, "103", "1", "buy"),  # minute 1: fresh only
            trade("2", 130, "999", "5", "buy"),  # a copy of Silver's trade 2, stamped in minute 2
            trade("5", 140, "104", "1", "sell"),
        ],
        schema=TRADES_SCHEMA,
    )
    windows = []

    def judged(settings, exchange: str, start, end, symbols) -> Fresh:
        windows.append((start, end))
        inside = [r for r in fresh.to_pylist() if start <= r["event_time"] < end]
        return Fresh(pa.Table.from_pylist(inside, schema=TRADES_SCHEMA))

    every, missing = _combined(None, partials(fresh), silver, None, judged)
    kept = [r for r in fresh.to_pylist() if r["price"] != D("999")]
    expected = compute_bars(pa.concat_tables([silver, pa.Table.from_pylist(kept, schema=TRADES_SCHEMA)]), "1m")
    by_start = lambda bars: sorted(bars, key=lambda b: b["bar_start"])  # noqa: E731
    assert by_start(merge_bars(every, "1m")) == by_start(expected)
    assert [b["trade_count"] for b in by_start(expected)] == [3, 1, 1]
    assert windows == [(T + dt.timedelta(minutes=2), T + dt.timedelta(minutes=3))]  # only minute 2 as trades
    assert missing == []


SORTED = [("aardvark", "9", 5), ("binance", "1", 5), ("binance", "2", 5), ("binance", "10", 7)]


@pytest.mark.parametrize(
    "order",
    [
        [0, 1, 2, 3],  # in order: kept as it is, unsorted
        [1, 0, 2, 3],  # a tie of event times broken by the exchange
        [0, 2, 1, 3],  # a tie broken by the trade id
        [0, 3, 1, 2],  # "10" sorts before "2" as text, but it is later
    ],
)
def test_trades_are_ordered_by_event_time_exchange_and_trade_id_and_sorted_only_when_not(order) -> None:
    rows = [{**trade(t, seconds, "100", "1", "buy"), "exchange": ex} for ex, t, seconds in (SORTED[i] for i in order)]
    table = pa.concat_tables([pa.Table.from_pylist(r, schema=TRADES_SCHEMA) for r in (rows[:2], rows[2:])])
    answer = _sorted(table)
    assert [(r["exchange"], r["trade_id"]) for r in answer.to_pylist()] == [(ex, t) for ex, t, _ in SORTED]
    assert (answer is table) == (order == [0, 1, 2, 3])


def test_outputs(tmp_path, capsys) -> None:
    table = pa.table({"symbol": ["BTC-USDT", "ETH-USDT"], "n": [1, 2]})
    write(table, "csv", None, 0)
    assert capsys.readouterr().out.splitlines() == ['"symbol","n"', '"BTC-USDT",1', '"ETH-USDT",2']
    write(table, "table", None, 1)
    out = capsys.readouterr().out
    assert "BTC-USDT" in out and "ETH-USDT" not in out and "1 more rows" in out
    write(table, "parquet", str(tmp_path / "r.parquet"), 0)
    assert pq.read_table(tmp_path / "r.parquet").equals(table)
    write(table, "arrow", str(tmp_path / "r.arrow"), 0)
    with pa.OSFile(str(tmp_path / "r.arrow")) as source:
        assert pa.ipc.open_file(source).read_all().equals(table)
    with pytest.raises(K2Error, match="writes a file"):
        write(table, "parquet", None, 0)


def test_what_a_partial_answer_lacks_crosses_the_query_server_s_socket_with_it() -> None:
    import os
    import socket

    from k2.query.live import protocol
    from k2.query.partial import PartialAnswer, noted, partial_notes

    lacking = [PartialAnswer("binance's tail unread", "start the broker"), PartialAnswer("kraken's", "the same")]
    table = noted(noted(TRADES_SCHEMA.empty_table(), lacking[:1]), lacking)  # noted twice: each note once
    server, client = socket.socketpair()
    with server, client:
        protocol.send_answer(server, table, {})
        _, fds = protocol._read_line(client)
        received = protocol.mapped_table(fds[0])
        os.close(fds[0])
    assert [(n.cause, n.fix) for n in partial_notes(received)] == [(n.cause, n.fix) for n in lacking]
    assert partial_notes(TRADES_SCHEMA.empty_table()) == []
    assert noted(TRADES_SCHEMA.empty_table(), []).schema.metadata is None


def test_k2_query_prints_what_a_partial_answer_lacks_and_complete_makes_it_an_error(
    tmp_path, monkeypatch, capsys
) -> None:
    import warnings

    import k2.query
    from k2.cli import build_parser
    from k2.cli.pipeline import cmd_query
    from k2.query.partial import PartialAnswer
    from k2.settings import Settings

    def partial_trades(*args, **kwargs) -> pa.Table:
        warnings.warn(PartialAnswer("the answer lacks binance's tail", "start the broker"), stacklevel=2)
        return pa.table({"n": [1]})

    settings = Settings.from_env({"K2_HOME": str(tmp_path)})
    monkeypatch.setattr(k2.query, "trades", partial_trades)
    args = build_parser().parse_args(["query", "trades", "--since", "1m", "--format", "csv"])
    assert cmd_query(settings, args) == 0
    out, err = capsys.readouterr()
    assert out.splitlines() == ['"n"', "1"]  # Arrow's CSV quotes names
    assert "k2: warning: the answer lacks binance's tail\nk2: fix: start the broker" in err
    complete = build_parser().parse_args(["query", "trades", "--since", "1m", "--complete"])
    with pytest.raises(PartialAnswer, match="lacks binance's tail") as raised:  # main prints it as k2: error
        cmd_query(settings, complete)
    assert raised.value.fix == "start the broker" and capsys.readouterr().out == ""


def test_k2_query_without_a_window_names_the_options_that_give_one(tmp_path) -> None:
    from k2.cli import build_parser
    from k2.cli.pipeline import cmd_query
    from k2.errors import K2Error
    from k2.settings import Settings

    settings = Settings.from_env({"K2_HOME": str(tmp_path)})
    for command in (["query", "sql", "SELECT count(*) FROM trades"], ["query", "bars"]):
        with pytest.raises(K2Error, match="needs a time window") as raised:
            cmd_query(settings, build_parser().parse_args(command))
        assert "--since 5m" in raised.value.fix and "--start" in raised.value.fix
    with pytest.raises(K2Error, match="needs a query"):  # the query is what it lacks first
        cmd_query(settings, build_parser().parse_args(["query", "sql"]))
