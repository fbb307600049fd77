"""The query server's pure parts: its store judges records once and then answers exactly as judging
them at query time does (Silver's rules, first copies in Kafka order), from any offsets on; it
forgets what Silver has processed; and the socket protocol's framing and paths."""

from __future__ import annotations

import datetime as dt
import json
import os
import re
import socket
import socketserver
import subprocess
import sys
import threading
import time
from decimal import Decimal

import duckdb
import pyarrow as pa
import pytest

from k2.errors import K2Error
from k2.exchanges import get_exchange
from k2.feeds.events import CONNECTED, CONNECTION_KIND, KIND_HEADER, ConnectionEvent
from k2.feeds.simulator import TradeSimulator
from k2.medallion import duckdb as silver_sql
from k2.query.bars import merge_bars, partials
from k2.query.hybrid import TRADES_SCHEMA
from k2.query.live import protocol
from k2.query.live.boundary import Processed
from k2.query.live.follower import JUDGE_AT, JUDGE_EVERY_S, Followers, judging_due
from k2.query.live.store import LiveStore, _may_hold_events
from k2.query.sources import RECORD_SCHEMA, from_messages, sql_time
from k2.runtime import procs, stack
from k2.settings import Settings

UTC = dt.UTC
T = dt.datetime(2026, 11, 20, 10, 0, tzinfo=UTC)
TOPIC = "t.binance.raw"


def binance(t: int, price: str, seconds: float, symbol: str = "BTCUSDT") -> bytes:
    when = int((T + dt.timedelta(seconds=seconds)).timestamp() * 1000)
    data = {"e": "trade", "E": when + 1, "s": symbol, "t": t, "p": price, "q": "0.5", "T": when, "m": False}
    return json.dumps({"stream": f"{symbol.lower()}@trade", "data": data}).encode()


# (partition, offset, value, Kafka timestamp in seconds from T)
RECORDS = [
    (0, 0, binance(1, "100.0", 5), 6),
    (0, 1, binance(2, "101.0", 30), 31),
    (1, 0, binance(1, "100.5", 5), 7),  # a copy of 1 in a later partition: not its first copy
    (0, 2, binance(3, "abc", 40), 41),  # poison
    (1, 1, binance(4, "99.0", 50, "ETHUSDT"), 51),
    (0, 3, binance(5, "102.0", 70), 71),  # after the window
    (0, 4, binance(2, "101.5", 30), 72),  # a late copy of 2
    (1, 2, b'{"result":null,"id":1}', 73),  # a subscription answer: no trade
    (1, 3, binance(6, "103.0", 20), 20 - 400),  # stamped more than the lead before its event: invalid
]


def records(rows=RECORDS, headers: list[list[dict]] | None = None) -> pa.Table:
    columns = list(zip(*rows, strict=True))
    return pa.table(
        {
            "kafka_topic": [TOPIC] * len(rows),
            "kafka_partition": pa.array(columns[0], pa.int32()),
            "kafka_offset": pa.array(columns[1], pa.int64()),
            "kafka_timestamp": [T + dt.timedelta(seconds=s) for s in columns[3]],
            "ingested_at": [None] * len(rows),
            "value": pa.array(columns[2], pa.binary()),
            "headers": headers or [[] for _ in rows],
        },
        schema=RECORD_SCHEMA,
    )


@pytest.fixture
def settings(tmp_path) -> Settings:
    return Settings.from_env({}, home=tmp_path, exchanges=["binance"])


@pytest.fixture
def store(settings):
    store = LiveStore(settings, settings.home / "spill")
    yield store
    store.close()


def at_query_time(settings: Settings, table: pa.Table, start, end, symbols, exchange: str = "binance") -> list[tuple]:
    """What a query without the server answers: the same rules over the raw records, at query time."""
    with duckdb.connect() as con:
        con.execute("SET TimeZone = 'UTC'")
        con.register("_raw", table)
        con.execute("CREATE TEMP TABLE _records AS SELECT * FROM _raw")
        window = (sql_time(start), sql_time(end))
        judged = silver_sql.classify_window(con, "_records", silver_sql.judging_of(settings, exchange), window)
        listed = ", ".join(f"'{s}'" for s in symbols or ())
        wanted = f"AND (symbol IN ({listed}) OR exchange_symbol IN ({listed}))" if symbols else ""
        rows = con.sql(
            f"SELECT trade_id, kafka_partition, kafka_offset, price FROM ({silver_sql.first_copies_sql(judged)}) "
            f"WHERE event_time >= {window[0]} AND event_time < {window[1]} {wanted}"
        ).fetchall()
    return sorted(rows)


def served(store: LiveStore, start, end, symbols, offsets, exchange: str = "binance") -> list[tuple]:
    table = store.first_copies(exchange, start, end, symbols, offsets)
    return sorted(
        zip(
            *(table.column(c).to_pylist() for c in ("trade_id", "kafka_partition", "kafka_offset", "price")),
            strict=True,
        )
    )


def test_the_store_answers_in_the_trades_schema_whatever_symbols_are_asked(settings, store) -> None:
    """The store keeps symbols and sides as enumerations of the known texts: an answer still carries
    plain strings, and a symbol the exchange does not know selects nothing instead of failing."""
    store.add("binance", records())
    window = (T, T + dt.timedelta(seconds=60))
    answers = {str(s): store.first_copies("binance", *window, s, {}) for s in (None, ["BTCUSDT"], ["DOGE-EUR"])}
    for answer in answers.values():
        assert answer.schema == TRADES_SCHEMA
    assert answers["None"].num_rows == 3 and answers["['DOGE-EUR']"].num_rows == 0
    assert set(answers["None"].column("exchange").to_pylist()) == {"binance"}
    assert set(answers["None"].column("kafka_topic").to_pylist()) == {settings.topic_for("binance")}
    assert set(answers["['BTCUSDT']"].column("symbol").to_pylist()) == {"BTC-USDT"}
    minutes = store.minute_partials("binance", *window, ["DOGE-EUR"], {})
    assert minutes.num_rows == 0 and minutes.schema.field("symbol").type == pa.string()
    assert store.minute_partials("binance", *window, None, {}).schema.field("symbol").type == pa.string()


def by_minute(table: pa.Table) -> list[dict]:
    """Minute partials merged per symbol and minute (kept partials may split a minute by round)."""
    return sorted(merge_bars(table, "1m"), key=lambda m: (m["symbol"], m["bar_start"]))


def in_exchange_layout(rows: list[tuple]) -> list[tuple]:
    """``rows`` with their trades in Binance's own layout (compact, every key in its order), which the
    store's SQL judges; the other records stay as they are, for Python."""

    def compact(value: bytes) -> bytes:
        message = json.loads(value)
        if "data" not in message:
            return value
        message["data"]["M"] = True
        return json.dumps(message, separators=(",", ":")).encode()

    return [(partition, offset, compact(value), at) for partition, offset, value, at in rows]


@pytest.mark.parametrize("layout", ["spaced", "exchange"])
@pytest.mark.parametrize("symbols", [None, ["BTCUSDT"], ["ETH-USDT"]])
def test_the_store_answers_as_judging_at_query_time(settings, store, symbols, layout: str) -> None:
    """Whether a poll's records are judged by SQL (the exchange's layout), by Python (any other JSON)
    or by both (poison beside the exchange's layout), the store keeps what judging at query time finds."""
    rows = RECORDS if layout == "spaced" else in_exchange_layout(RECORDS)
    canonical = [re.fullmatch(get_exchange("binance").rules.canonical, v.decode()) is not None for _, _, v, _ in rows]
    assert sum(canonical) == (0 if layout == "spaced" else 8)  # every trade message, the poison's too
    for poll in (rows[:3], rows[3:]):  # judged as they arrive, in two polls (the first all valid trades)
        store.add("binance", records(poll))
    assert store.rows("binance") == 6  # valid candidates only: not the poison, the answer or the stale one
    window = (T, T + dt.timedelta(seconds=60))
    expected = at_query_time(settings, records(rows), *window, symbols)
    assert served(store, *window, symbols, {}) == expected
    assert expected  # the comparison is about trades, not two empty answers
    if symbols is None:
        assert [(t, p, o) for t, p, o, _ in expected] == [("1", 0, 0), ("2", 0, 1), ("4", 1, 1)]


def test_kraken_s_own_layout_is_kept_as_judging_at_query_time_finds(tmp_path) -> None:
    """Kraken's prices and quantities are JSON numbers, whose text the store does not write as Spark
    would (only dead letters' details show it): it keeps the same trades, at the same prices."""
    settings = Settings.from_env({}, home=tmp_path, exchanges=["kraken"])
    kraken = get_exchange("kraken")
    start_us = int(T.timestamp() * 1e6)
    simulator = TradeSimulator(kraken, list(kraken.default_symbols), seed=3, rate=500, start_us=start_us)
    payloads = [payload for _ in range(3) for payload in simulator.next_batch().payloads]
    assert all(re.fullmatch(kraken.rules.canonical, p.decode()) for p in payloads)  # judged by the SQL
    rows = [(0, offset, payload, 1) for offset, payload in enumerate(payloads)]
    store = LiveStore(settings, tmp_path / "spill")
    try:
        store.add("kraken", records(rows))
        window = (T, T + dt.timedelta(seconds=60))
        expected = at_query_time(settings, records(rows), *window, None, "kraken")
        assert len(expected) > len(payloads)  # several trades a message, all in the window
        assert served(store, *window, None, {}, "kraken") == expected
    finally:
        store.close()


def test_the_store_aggregates_minute_partials_of_its_first_copies(store) -> None:
    store.add("binance", records())
    window = (T, T + dt.timedelta(seconds=60))
    firsts = store.first_copies("binance", *window, None, {})
    minutes = store.minute_partials("binance", *window, None, {})
    by_symbol = lambda table: sorted(table.to_pylist(), key=lambda m: m["symbol"])  # noqa: E731
    assert [m["symbol"] for m in by_symbol(minutes)] == ["BTC-USDT", "ETH-USDT"]
    assert by_symbol(minutes) == by_symbol(partials(firsts))
    assert sum(m["trade_count"] for m in by_symbol(minutes)) == firsts.num_rows == 3


def test_kept_minute_partials_equal_aggregating_the_first_copies(store) -> None:
    """Partials kept per judging round (k2.query.live.minutes) give what aggregating the store's
    first copies gives: over rounds, with contested copies, for a symbol, from offsets Silver has
    reached in the middle of a round, and after the store forgot what Silver processed."""
    window = (T, T + dt.timedelta(minutes=2))

    def same(offsets: dict[int, int], symbols: list[str] | None = None) -> list[dict]:
        expected = by_minute(partials(store.first_copies("binance", *window, symbols, offsets)))
        assert by_minute(store.minute_partials("binance", *window, symbols, offsets)) == expected
        return expected

    store.add("binance", records(RECORDS[:4]))  # trade 1 twice, in two partitions: contested
    assert sum(m["trade_count"] for m in same({})) == 2
    store.add("binance", records(RECORDS[4:]))  # trade 2's late copy: contested too
    minute_one = [(0, 10, binance(20, "110.0", 65), 66), (1, 10, binance(21, "111.0", 70), 71)]
    store.add("binance", records(minute_one))  # plain first copies, one minute later
    whole = same({})
    assert [(m["symbol"], m["trade_count"]) for m in whole] == [("BTC-USDT", 2), ("BTC-USDT", 3), ("ETH-USDT", 1)]
    assert same({}, ["BTCUSDT"]) == [m for m in whole if m["symbol"] == "BTC-USDT"]
    assert same({}, ["ETH-USDT"]) == [m for m in whole if m["symbol"] == "ETH-USDT"]
    assert store._minutes["binance"]._aggregated == 3  # every round's partials are kept
    # trade 30 arrives in partition 1, then a copy at a lower partition: that copy is its first (Silver's
    # rank), so the kept partial of the first arrival's round no longer holds for the minute
    store.add("binance", records([(1, 11, binance(30, "120.0", 80), 81)]))
    assert max(m["high"] for m in same({})) == Decimal("120")
    store.add("binance", records([(0, 12, binance(30, "121.0", 80), 82)]))
    whole = same({})
    assert max(m["high"] for m in whole) == Decimal("121")
    assert same({0: 2, 1: 1}) != whole  # Silver processed part of the first round
    store.prune("binance", {0: 2, 1: 1})
    assert same({0: 2, 1: 1})
    # not whole minutes: aggregated from the first copies
    half = (T, T + dt.timedelta(seconds=90))
    firsts = store.first_copies("binance", *half, None, {0: 2})
    assert by_minute(store.minute_partials("binance", *half, None, {0: 2})) == by_minute(partials(firsts))


def test_rounds_kept_before_a_bars_query_give_what_aggregating_at_query_time_gives(store) -> None:
    """The server keeps each round's minute partials every few seconds (the follower's refresh), so
    a bars query after a quiet spell reads them instead of aggregating every round since."""
    store.add("binance", records(RECORDS[:4]))
    store.add("binance", records(RECORDS[4:]))
    minutes = store._minutes["binance"]
    assert minutes._aggregated == 0  # nothing kept before it is asked
    store.keep_minutes("binance")
    assert minutes._aggregated == 2
    kept = store._cursor().execute(f"SELECT count(*) FROM {minutes.parts}").fetchall()[0][0]
    assert kept > 0
    window = (T, T + dt.timedelta(minutes=2))
    expected = by_minute(partials(store.first_copies("binance", *window, None, {})))
    assert by_minute(store.minute_partials("binance", *window, None, {})) == expected
    assert sum(m["trade_count"] for m in expected) == 4  # the first copies of the two minutes


class Message:
    """What the server reads of a ``confluent_kafka.Message``."""

    def __init__(self, offset: int, value: bytes, headers: list[tuple[str, bytes]] | None) -> None:
        self._offset, self._value, self._headers = offset, value, headers

    def partition(self) -> int:
        return 1

    def offset(self) -> int:
        return self._offset

    def timestamp(self) -> tuple[int, int]:
        return 1, int(T.timestamp() * 1000) + self._offset

    def value(self) -> bytes:
        return self._value

    def headers(self) -> list[tuple[str, bytes]] | None:
        return self._headers


def test_messages_become_records_keeping_only_the_connection_event_mark() -> None:
    plain = [("exchange", b"binance"), ("received_at", b"1")]
    messages = [
        Message(7, binance(1, "100.0", 5), plain),
        Message(8, b'{"event":"connected"}', [*plain, (KIND_HEADER, CONNECTION_KIND)]),
        Message(9, binance(2, "100.0", 6), None),
    ]
    table = from_messages(TOPIC, messages)
    assert table.schema == RECORD_SCHEMA
    rows = table.to_pylist()
    coordinates = [(r["kafka_topic"], r["kafka_partition"], r["kafka_offset"]) for r in rows]
    assert coordinates == [(TOPIC, 1, 7), (TOPIC, 1, 8), (TOPIC, 1, 9)]
    assert [r["headers"] for r in rows] == [[], [{"key": KIND_HEADER, "value": CONNECTION_KIND}], []]
    assert rows[1]["kafka_timestamp"] == T + dt.timedelta(milliseconds=8)
    assert rows[0]["value"] == messages[0].value() and rows[2]["ingested_at"] is None
    assert _may_hold_events(table) and not _may_hold_events(table.slice(2))


def test_from_offsets_on_the_first_copy_left_counts(settings, store) -> None:
    """After Silver processed partition 0 up to offset 2, trade 2's first unprocessed copy is the late
    one, as a query over the unprocessed records alone finds."""
    store.add("binance", records())
    window = (T, T + dt.timedelta(seconds=60))
    left = [r for r in RECORDS if r[0] == 1 or r[1] >= 2]
    assert served(store, *window, None, {0: 2}) == at_query_time(settings, records(left), *window, None)
    assert ("2", 0, 4) in [r[:3] for r in served(store, *window, None, {0: 2})]


def test_the_store_forgets_what_silver_processed(store) -> None:
    store.add("binance", records())
    assert store.prune("binance", {0: 4}) == 3  # partition 0's offsets 0, 1, 3 (2 was poison)
    assert store.rows("binance") == 3
    assert store.prune("binance", {}) == 0


def test_a_poll_with_a_connection_event_keeps_its_trades(store) -> None:
    """Only a poll whose records carry the event header takes the events' path; either way its
    trades are judged, and the event is no candidate."""
    event = ConnectionEvent(CONNECTED, T, 1).payload()
    marked = [{"key": KIND_HEADER, "value": CONNECTION_KIND}]
    polled = records([(0, 0, event, 1), (0, 1, binance(1, "100.0", 5), 6)], headers=[marked, []])
    assert _may_hold_events(polled) and not _may_hold_events(records())
    assert store.add("binance", polled) == 1
    assert store.add("binance", records([(0, 2, binance(2, "101.0", 6), 7)])) == 1  # a poll without events
    window = (T, T + dt.timedelta(seconds=60))
    assert served(store, *window, None, {}) == [("1", 0, 1, Decimal("100.0")), ("2", 0, 2, Decimal("101.0"))]


def test_a_waiting_query_has_the_follower_judge_once_what_it_waits_for(settings) -> None:
    """A query waits for the records up to Kafka's end offsets; while it waits the follower judges as
    soon as they have arrived (or nothing more does), without gathering more first, and
    the query goes on once they are judged."""
    followers = Followers(settings)
    feed = followers.feeds["binance"]
    feed.caught_up, feed.processed, feed.positions = True, Processed(T), {0: 4}
    assert followers.wanted(feed) is None
    assert not judging_due(6, 0.1, None, {0: 10})
    assert judging_due(6, JUDGE_EVERY_S, None, {0: 10})  # waited long enough
    assert judging_due(JUDGE_AT, 0.1, None, {0: 10})  # enough of them
    answer: list[bool] = []
    ends = {0: 10}  # Kafka's end offsets when the query arrives
    query = threading.Thread(target=lambda: answer.append(followers.reached_end(feed, ends)))
    query.start()
    with followers.changed:
        assert followers.changed.wait_for(lambda: feed.waiting == 1, timeout=30)
    wanted = followers.wanted(feed)
    assert wanted == {0: 10}
    assert not judging_due(3, 0.1, wanted, {0: 7})  # offsets 4-6 arrived: 7-9 are on their way
    assert judging_due(6, 0.1, wanted, {0: 10})
    assert judging_due(3, 0.1, wanted, {})  # a poll that brought nothing: judge what there is
    with followers.changed:  # the follower judged offsets 4-9
        feed.positions[0] = 10
        followers.changed.notify_all()
    query.join(timeout=30)
    assert answer == [True]
    assert feed.waiting == 0 and not feed.wanted
    assert followers.wanted(feed) is None


def test_an_answer_is_a_json_line_carrying_its_table_in_a_memory_file(tmp_path, monkeypatch) -> None:
    table = pa.table({"trade_id": ["1", "2"]})
    server, client = socket.socketpair()
    with server, client:
        protocol.send_answer(server, table, {"served": {"live": 1}})
        line, fds = protocol._read_line(client)
        assert json.loads(line) == {"ok": True, "table": True, "served": {"live": 1}}
        assert len(fds) == 1
        received = protocol.mapped_table(fds[0])
        os.close(fds[0])  # the mapping outlives the descriptor
        assert received.equals(table)
        protocol.send_error(server, "the lake has no table silver.trades", "run `k2 lake init`.")
        assert json.loads(protocol._read_line(client)[0])["fix"] == "run `k2 lake init`."
        protocol.send_answer(server, None, {"feeds": {}})  # a status: no table, no file
        assert protocol._read_line(client) == (b'{"ok": true, "table": false, "feeds": {}}\n', [])


def test_an_answer_is_complete_once_its_line_is_sent_whenever_the_client_leaves(monkeypatch) -> None:
    """A client reads the line and its descriptor, then closes: the server sends nothing more (a send
    after that fails with a broken pipe, which turned answered queries into logged failures)."""
    server, client = socket.socketpair()
    real_send_fds = socket.send_fds
    received: list[tuple[bytes, list[int]]] = []

    def sent_then_client_left(sock, buffers, fds):
        sent = real_send_fds(sock, buffers, fds)
        received.append(protocol._read_line(client))
        client.close()
        return sent

    monkeypatch.setattr(socket, "send_fds", sent_then_client_left)
    with server:
        protocol.send_answer(server, pa.table({"trade_id": ["1"]}), {"served": {"live": 1}})
    ((line, fds),) = received
    assert json.loads(line)["ok"] and len(fds) == 1
    os.close(fds[0])


def test_without_a_server_a_query_is_answered_in_process(tmp_path) -> None:
    settings = Settings.from_env({}, home=tmp_path)
    assert protocol.ask(settings, {"op": "status"}) is None
    protocol.socket_path(settings).parent.mkdir(parents=True)
    protocol.socket_path(settings).touch()  # a file left by a server that died: no one listens
    assert protocol.ask(settings, {"op": "status"}) is None


def test_a_query_restarts_a_server_that_died_but_not_one_k2_down_stopped(tmp_path, monkeypatch) -> None:
    started: list[Settings] = []
    monkeypatch.setattr(stack, "start_query_server", started.append)
    settings = Settings.from_env({}, home=tmp_path)
    pid_file = stack.query_server_pid_file(settings)
    pid_file.parent.mkdir(parents=True)
    assert not stack.revive_query_server(settings)  # no pid file: `k2 down` stopped it, or none was started
    dead = subprocess.Popen(["true"])
    dead.wait()
    pid_file.write_text(str(dead.pid))
    assert not stack.revive_query_server(settings)  # started moments ago: a server failing at its start
    an_hour_ago = time.time() - 3600
    os.utime(pid_file, (an_hour_ago, an_hour_ago))
    off = Settings.from_env({"K2_QUERY_SERVER": "false"}, home=tmp_path)
    assert not stack.revive_query_server(off) and not started
    assert stack.revive_query_server(settings) and started == [settings]
    live = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        procs.write_pid_file(pid_file, live.pid)  # written once it started, as `k2 up` writes it
        monkeypatch.setattr(stack, "REVIVE_AFTER_S", 0.0)  # however long ago that was
        assert not stack.revive_query_server(settings) and len(started) == 1  # running: left alone
    finally:
        live.kill()
        live.wait()


def test_a_home_too_deep_for_a_socket_gets_a_private_path_elsewhere(tmp_path) -> None:
    deep = Settings.from_env({}, home=tmp_path / ("x" * 120))
    path = protocol.socket_path(deep)
    assert len(str(path)) <= 100 and path != deep.run_dir / "query.sock"
    assert protocol.socket_path(Settings.from_env({}, home=tmp_path / ("x" * 120))) == path
    assert protocol.socket_path(Settings.from_env({}, home=tmp_path)) == tmp_path / "run" / "query.sock"


@pytest.mark.parametrize("fallback", [False, True])
def test_a_server_error_is_raised_with_its_fix_or_answered_in_process(tmp_path, fallback: bool) -> None:
    settings = Settings.from_env({}, home=tmp_path)
    path = protocol.socket_path(settings)
    path.parent.mkdir(parents=True)

    class Failing(socketserver.BaseRequestHandler):
        def handle(self) -> None:
            protocol.read_request(self.request)
            protocol.send_error(
                self.request, "the lake has no table silver.trades", "run `k2 lake init`.", fallback=fallback
            )

    with socketserver.UnixStreamServer(str(path), Failing) as server:
        thread = threading.Thread(target=server.handle_request)
        thread.start()
        if fallback:  # the server failed unexpectedly: the query is answered without it
            assert protocol.ask(settings, {"op": "trades"}) is None
        else:
            with pytest.raises(K2Error) as info:
                protocol.ask(settings, {"op": "trades"})
            assert (info.value.cause, info.value.fix) == ("the lake has no table silver.trades", "run `k2 lake init`.")
        thread.join(10)


def test_status_shows_each_store_and_its_judging_rounds() -> None:
    from k2.status import _query_feed

    feed = {"candidates": 12_345, "caught_up": True, "unusable": None, "rounds": 40, "judging_s": 2.0}
    assert _query_feed("binance", feed) == (
        "binance: 12,345 judged trades, caught up, 40 judging rounds of 50 ms on average"
    )
    starting = feed | {"caught_up": False, "rounds": 0, "judging_s": 0.0, "unusable": "following failed"}
    assert _query_feed("kraken", starting) == (
        "kraken: 12,345 judged trades, catching up, answered without it: following failed"
    )


def test_the_objects_a_judging_round_holds_start_no_garbage_collection() -> None:
    """In a process of its own: `collect_less` changes the interpreter's collector for good."""
    code = """
import gc
from k2.query.live.follower import JUDGE_AT
from k2.query.live.server import collect_less

started = []
gc.callbacks.append(lambda phase, info: started.append(info["generation"]) if phase == "start" else None)

def a_round():
    started.clear()
    held = [[offset] for offset in range(2 * JUDGE_AT)]  # GC-tracked, as Kafka messages are
    del held
    return len(started)

before = a_round()
collect_less()
print(before, a_round(), gc.get_freeze_count() > 0)
"""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60)
    before, after, frozen = out.stdout.split()
    assert int(before) > 0  # Python's defaults collect many times over one round
    assert (int(after), frozen) == (0, "True")


def test_a_backlog_beyond_the_store_s_memory_spills_to_its_directory_and_is_answered(settings, tmp_path) -> None:
    spill = tmp_path / "spill"
    store = LiveStore(settings, spill, memory_limit="16MB")
    count = 100_000  # more than 16 MB of kept candidates
    rows = [(i % 3, i // 3, binance(i + 1, "100.0", 5 + i / count * 50), 6 + i / count * 50) for i in range(count)]
    try:
        for first in range(0, count, JUDGE_AT * 5):
            store.add("binance", records(rows[first : first + JUDGE_AT * 5]))
        assert store.rows("binance") == count
        assert any(spill.iterdir()), "nothing spilled: the store held it all in memory"
        answer = store.first_copies("binance", T, T + dt.timedelta(seconds=60), ["BTCUSDT"], {})
        assert answer.num_rows == count
    finally:
        store.close()
