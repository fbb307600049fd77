"""Pure logic of gap repair: each exchange's REST pages and live rendering, the client's rate-limit
and retry rules (canned answers, a recorded sleep), paging a gap, the settings and the command's
arguments. The HTTP servers and Kafka are in tests/integration/test_gap_repair.py."""

from __future__ import annotations

import datetime as dt
import json
import re
import threading
from decimal import Decimal
from typing import Any

import pytest

from k2.cli import build_parser
from k2.cli.gaps import gaps_to_repair
from k2.errors import K2Error
from k2.exchanges import RestPage, RestRateLimited, RestTrade, get_exchange
from k2.exchanges.tail import parse_payload
from k2.gaps.model import Gap
from k2.gaps.repair import GapRepair, _repair_gap, resolve_rest_url
from k2.gaps.rest import RepairStopped, Response, RestClient, retry_after_s
from k2.settings import GapRepairSettings, Settings

UTC = dt.UTC
T0 = dt.datetime(2026, 11, 30, 12, 0, tzinfo=UTC)
BINANCE_ROW = {
    "id": 28457,
    "price": "4.00000100",
    "qty": "12.00000000",
    "quoteQty": "48.000012",
    "time": 1499865549590,
    "isBuyerMaker": True,
    "isBestMatch": True,
}
KRAKEN_BODY = (
    b'{"error":[],"result":{"XXBTZUSD":[["30243.40000","0.34507674",1688669597.8277369,"b","m","",61044952],'
    b'["30243.30000","0.00376960",1688669598.2804112,"s","l","",61044953]],"last":"1688671969993150842"}}'
)


# --- the exchanges' REST history and its live rendering ---------------------------------------------
def test_binance_rest_trades_render_as_the_live_feed_and_parse_as_silver_does() -> None:
    binance = get_exchange("binance")
    page = binance.rest_page(json.dumps([BINANCE_ROW]).encode())
    assert page.cursor == 28458  # the next page starts after the highest id
    payload = binance.render_rest("BTCUSDT", page.trades[0])
    assert re.search(binance.rules.canonical, payload.decode())  # the live feed's exact layout
    [trade] = parse_payload(binance.rules, payload)
    assert trade["parse_error"] is None
    assert (trade["exchange_symbol"], trade["trade_id"], trade["price_text"], trade["quantity_text"]) == (
        "BTCUSDT",
        "28457",
        "4.00000100",
        "12.00000000",
    )
    assert trade["taker_side"] == "sell"  # the buyer was the maker
    assert trade["event_time"] == dt.datetime(2017, 7, 12, 13, 19, 9, 590000, tzinfo=UTC)


def test_kraken_rest_trades_render_as_v2_messages_and_parse_as_silver_does() -> None:
    kraken = get_exchange("kraken")
    page = kraken.rest_page(KRAKEN_BODY)
    assert page.cursor == 1688671969993150842
    assert [t.trade_id for t in page.trades] == [61044952, 61044953]
    payloads = [kraken.render_rest("BTC/USD", t) for t in page.trades]
    assert all(re.search(kraken.rules.canonical, p.decode()) for p in payloads)
    parsed = [c for p in payloads for c in parse_payload(kraken.rules, p)]
    assert [c["parse_error"] for c in parsed] == [None, None]
    assert [(c["trade_id"], c["taker_side"]) for c in parsed] == [("61044952", "buy"), ("61044953", "sell")]
    assert [Decimal(c["price_text"]) for c in parsed] == [Decimal("30243.4"), Decimal("30243.3")]
    assert parsed[1]["quantity_text"] == "0.0037696"
    # the REST time's microseconds survive exactly (no float rounding)
    assert parsed[0]["event_time"] == dt.datetime(2023, 7, 6, 18, 53, 17, 827736, tzinfo=UTC)
    assert json.loads(payloads[1])["data"][0]["ord_type"] == "limit"


def test_kraken_requests_use_the_rest_pair_name() -> None:
    kraken = get_exchange("kraken")
    url = kraken.rest_request("https://api.kraken.com/", "BTC/USD", 1_700_000_000_000_000_000, 5)
    assert url == "https://api.kraken.com/0/public/Trades?pair=XBTUSD&since=1700000000000000000&count=1000"
    assert "pair=ETHXBT" in kraken.rest_request("https://x", "ETH/BTC", 0, 5)


def test_binance_asks_for_no_more_than_the_gap_needs() -> None:
    binance = get_exchange("binance")
    assert binance.rest_request("https://h", "BTCUSDT", 100, 250).endswith("fromId=100&limit=151")
    assert binance.rest_request("https://h", "BTCUSDT", 100, 100_000).endswith("fromId=100&limit=1000")


@pytest.mark.parametrize(
    ("exchange", "body", "error"),
    [
        ("binance", b'{"code":-1121,"msg":"Invalid symbol."}', ValueError),
        ("binance", b'[{"id":"1","price":"1","qty":"1","time":1,"isBuyerMaker":true}]', ValueError),
        ("binance", b'[{"id":1,"price":"1\\"","qty":"1","time":1,"isBuyerMaker":true}]', ValueError),
        ("binance", b"not json", ValueError),
        ("kraken", b'{"error":["EAPI:Rate limit exceeded"]}', RestRateLimited),
        ("kraken", b'{"error":["EGeneral:Too many requests"]}', RestRateLimited),
        ("kraken", b'{"error":["EQuery:Unknown asset pair"]}', ValueError),
        ("kraken", b'{"error":[],"result":{"XXBTZUSD":[["1","1",1.5,"x","m","",1]],"last":"1"}}', ValueError),
        ("kraken", b'{"error":[],"result":{"XXBTZUSD":[]}}', ValueError),
    ],
)
def test_answers_that_are_no_page_are_refused(exchange: str, body: bytes, error: type[Exception]) -> None:
    with pytest.raises(error):
        get_exchange(exchange).rest_page(body)


# --- the client: pacing, rate limits, retries, budget -----------------------------------------------
class Canned:
    """A transport answering from a list, and a sleep that records instead of waiting."""

    def __init__(self, *answers: Response | OSError) -> None:
        self.answers = list(answers)
        self.urls: list[str] = []
        self.slept: list[float] = []
        self.now = 0.0

    def __call__(self, url: str, timeout_s: float) -> Response:
        self.urls.append(url)
        answer = self.answers.pop(0)
        if isinstance(answer, OSError):
            raise answer
        return answer

    def sleep(self, seconds: float) -> bool:
        self.slept.append(seconds)
        self.now += seconds
        return False


OK = Response(200, {}, b"[]")


def client(canned: Canned, interval_s: float = 0.0, **limits: Any) -> RestClient:
    return RestClient(
        "binance",
        GapRepairSettings(**limits),
        interval_s=interval_s,
        transport=canned,
        sleep=canned.sleep,
        clock=lambda: canned.now,
    )


def test_429_waits_exactly_as_long_as_retry_after_says() -> None:
    canned = Canned(Response(429, {"retry-after": "3"}, b""), Response(418, {"retry-after": "7"}, b""), OK)
    c = client(canned)
    assert c.get("u", json.loads) == []
    assert canned.slept == [3.0, 7.0] and c.rate_limited == 2 and c.waited_s == 10.0 and c.requests == 3


def test_retry_after_as_an_http_date() -> None:
    now = dt.datetime(2026, 11, 30, 12, 0, 0, tzinfo=UTC)
    assert retry_after_s("Mon, 30 Nov 2026 12:00:05 GMT", now) == 5.0
    assert retry_after_s("Mon, 30 Nov 2026 11:00:00 GMT", now) == 0.0
    assert retry_after_s("soon", now) is None and retry_after_s(None) is None


def test_a_longer_retry_after_than_allowed_fails_naming_the_setting() -> None:
    canned = Canned(Response(418, {"retry-after": "7200"}, b""))
    with pytest.raises(K2Error, match="asks to wait 7200 s, longer than K2_GAPS_REPAIR_MAX_WAIT_S=120"):
        client(canned).get("u", json.loads)
    assert canned.slept == []


def test_the_waiting_budget_bounds_all_waits() -> None:
    canned = Canned(*[Response(429, {"retry-after": "50"}, b"")] * 5)
    with pytest.raises(K2Error, match=r"used its waiting budget.*K2_GAPS_REPAIR_WAIT_BUDGET_S=120"):
        client(canned, max_wait_s=60, wait_budget_s=120).get("u", json.loads)
    assert canned.slept == [50.0, 50.0]


def test_a_rate_limit_said_in_the_body_backs_off_without_retry_after() -> None:
    kraken = get_exchange("kraken")
    canned = Canned(Response(200, {}, b'{"error":["EAPI:Rate limit exceeded"]}'), Response(200, {}, KRAKEN_BODY))
    c = client(canned)
    assert len(c.get("u", kraken.rest_page).trades) == 2
    assert c.rate_limited == 1 and canned.slept == [1.0]


def test_server_errors_and_network_errors_are_retried_with_exponential_backoff() -> None:
    canned = Canned(
        Response(503, {}, b"busy"), ConnectionResetError("reset"), Response(502, {}, b""), Response(500, {}, b""), OK
    )
    c = client(canned)
    assert c.get("u", json.loads) == []
    assert canned.slept == [0.5, 1.0, 2.0, 4.0] and c.retried == 4


def test_retries_run_out_with_the_last_cause_named() -> None:
    canned = Canned(*[Response(503, {}, b"maintenance")] * 3)
    with pytest.raises(K2Error, match="failed 3 times in a row on u; last: HTTP 503 maintenance"):
        client(canned, retries=2).get("u", json.loads)


def test_a_client_error_is_not_retried() -> None:
    canned = Canned(Response(400, {}, b'{"code":-1121,"msg":"Invalid symbol."}'))
    with pytest.raises(K2Error, match=re.escape('HTTP 400 {"code":-1121,"msg":"Invalid symbol."}')):
        client(canned).get("u", json.loads)
    assert canned.slept == []


def test_requests_are_paced_by_the_exchanges_interval() -> None:
    canned = Canned(OK, OK, OK)
    c = client(canned, interval_s=0.5)
    for _ in range(3):
        c.get("u", json.loads)
    assert canned.slept == [0.5, 0.5] and c.waited_s == 0.0  # pacing is not rate-limit waiting


def test_a_stop_ends_a_wait() -> None:
    canned = Canned(Response(429, {"retry-after": "30"}, b""))
    c = client(canned)
    c.stop.set()
    with pytest.raises(RepairStopped):
        c.get("u", json.loads)


# --- paging one gap ---------------------------------------------------------------------------------
class Pages:
    """A client serving pages from a function of the URL's cursor, recording each cursor."""

    def __init__(self, exchange: str, pages: dict[int, RestPage], cursor_param: str) -> None:
        self.pages, self.param = pages, cursor_param
        self.cursors: list[int] = []
        self.stop = threading.Event()

    def get(self, url: str, parse: Any) -> RestPage:
        cursor = int(re.search(rf"{self.param}=(\d+)", url).group(1))
        self.cursors.append(cursor)
        return self.pages[cursor]


class Producer:
    def __init__(self) -> None:
        self.records: list[tuple[bytes, bytes]] = []

    def publish(self, payload: bytes, key: bytes, on_delivery: Any) -> None:
        self.records.append((payload, key))
        on_delivery(None, None)

    def count_delivery(self, err: Any, msg: Any) -> None:
        pass

    def poll(self, timeout: float) -> None:
        pass


def trades(ids: range, start_us: int = 1_700_000_000_000_000) -> list[RestTrade]:
    return [RestTrade(i, "1.5", "2", start_us + i, i % 2 == 0) for i in ids]


def gap(exchange: str, first: int, last: int, symbol: str = "BTCUSDT") -> Gap:
    return Gap(exchange, "BTC-USDT", symbol, first, last, T0, T0 + dt.timedelta(minutes=5))


def run(exchange: str, g: Gap, pages: Pages, max_trades: int = 100_000) -> tuple[GapRepair, list[int]]:
    result, producer = GapRepair(g), Producer()
    ex = get_exchange(exchange)
    _repair_gap(ex, "https://h", result, pages, producer, max_trades, lambda line: None)
    ids = [int(c["trade_id"]) for p, _ in producer.records for c in parse_payload(ex.rules, p)]
    assert {k for _, k in producer.records} <= {g.exchange_symbol.encode()}
    return result, ids


def test_binance_partial_pages_continue_after_their_last_id_and_only_gap_ids_are_published() -> None:
    pages = Pages(
        "binance",
        {100: RestPage(trades(range(100, 130)), 130), 130: RestPage(trades(range(130, 180)), 180)},
        "fromId",
    )
    result, ids = run("binance", gap("binance", 100, 149), pages)
    assert pages.cursors == [100, 130]
    assert ids == list(range(100, 150))  # 150-179 came with the page but are outside the gap
    assert (result.fetched, result.published, result.still_missing, result.ended) == (
        50,
        50,
        0,
        "reached the gap's end",
    )


def test_an_exchange_without_the_trades_leaves_them_missing() -> None:
    pages = Pages("binance", {100: RestPage(trades(range(100, 110)), 110), 110: RestPage([], None)}, "fromId")
    result, ids = run("binance", gap("binance", 100, 149), pages)
    assert ids == list(range(100, 110))
    assert (result.still_missing, result.ended, result.ok) == (40, "the exchange has no trades further", True)


def test_a_gap_larger_than_the_cap_is_repaired_in_part() -> None:
    pages = Pages("binance", {0: RestPage(trades(range(0, 1000)), 1000)}, "fromId")
    result, ids = run("binance", gap("binance", 0, 5000), pages, max_trades=300)
    assert ids == list(range(300)) and result.still_missing == 5001 - 300
    assert "K2_GAPS_REPAIR_MAX_TRADES=300" in result.ended


def test_a_page_that_makes_no_progress_is_an_error_naming_it() -> None:
    pages = Pages("binance", {100: RestPage(trades(range(100, 120)), 100)}, "fromId")
    with pytest.raises(
        K2Error, match="made no progress on binance BTCUSDT ids 100-149: the page at 100 points next at 100"
    ):
        run("binance", gap("binance", 100, 149), pages)


def test_kraken_pages_by_time_from_before_the_gap_and_skips_repeats() -> None:
    start_ns = int((T0 - dt.timedelta(seconds=1)).timestamp()) * 1_000_000_000
    us = int(T0.timestamp() * 1e6)
    pages = Pages(
        "kraken",
        {
            start_ns: RestPage(trades(range(40, 60), us), start_ns + 2_000),  # before the gap, then its first ones
            start_ns + 2_000: RestPage(trades(range(55, 80), us), start_ns + 3_000),  # overlaps the previous page
        },
        "since",
    )
    result, ids = run("kraken", gap("kraken", 50, 70, "BTC/USD"), pages)
    assert pages.cursors == [start_ns, start_ns + 2_000]
    assert ids == list(range(50, 71)) and result.still_missing == 0


def test_kraken_stops_once_the_trades_pass_the_gaps_end_time() -> None:
    start_ns = int((T0 - dt.timedelta(seconds=1)).timestamp()) * 1_000_000_000
    late = int((T0 + dt.timedelta(hours=1)).timestamp() * 1e6)
    pages = Pages("kraken", {start_ns: RestPage(trades(range(10, 20), late), start_ns + 1)}, "since")
    result, ids = run("kraken", gap("kraken", 50, 70, "BTC/USD"), pages)
    assert ids == [] and result.ended == "the exchange's trades passed the gap's end time without its ids"


# --- settings and the command's arguments -----------------------------------------------------------
def test_repair_settings(tmp_path) -> None:
    s = Settings.from_env({"K2_HOME": str(tmp_path), "K2_GAPS_REPAIR": "on", "K2_BINANCE_REST_URL": "http://x:1"})
    assert s.gaps_repair.enabled is True
    assert Settings.from_env({"K2_HOME": str(tmp_path)}).gaps_repair.enabled is False
    with pytest.raises(K2Error, match="K2_GAPS_REPAIR_MAX_WAIT_S=900 is longer than K2_GAPS_REPAIR_WAIT_BUDGET_S"):
        Settings.from_env({"K2_GAPS_REPAIR_MAX_WAIT_S": "900"})
    with pytest.raises(K2Error, match="K2_GAPS_REPAIR='maybe' is not a valid bool"):
        Settings.from_env({"K2_GAPS_REPAIR": "maybe"})


def test_rest_urls_come_from_the_exchange_option_and_are_checked(monkeypatch: pytest.MonkeyPatch, tmp_path) -> None:
    settings = Settings.from_env({"K2_HOME": str(tmp_path)})
    binance = get_exchange("binance")
    monkeypatch.delenv("K2_BINANCE_REST_URL", raising=False)
    assert resolve_rest_url(settings, binance) == "https://api.binance.com"
    monkeypatch.setenv("K2_BINANCE_REST_URL", "http://127.0.0.1:8000")
    assert resolve_rest_url(settings, binance) == "http://127.0.0.1:8000"
    for bad in ("ftp://host", "api.binance.com", "https://h/?symbol=x"):
        monkeypatch.setenv("K2_BINANCE_REST_URL", bad)
        with pytest.raises(K2Error, match=r"K2_BINANCE_REST_URL=.* is not an http\(s\) base URL"):
            resolve_rest_url(settings, binance)


def args(*argv: str):
    return build_parser().parse_args(["gaps", "repair", *argv])


def test_a_range_on_the_command_line_is_one_gap(tmp_path) -> None:
    settings = Settings.from_env({"K2_HOME": str(tmp_path)})
    [g] = gaps_to_repair(
        settings,
        args(
            "--exchange",
            "kraken",
            "--symbol",
            "BTC/USD",
            "--from-id",
            "0",
            "--to-id",
            "9",
            "--after",
            "2026-11-30T12:00:00Z",
        ),
    )
    assert (g.symbol, g.exchange_symbol, g.first_missing_id, g.missing_count, g.after_time) == (
        "BTC-USD",
        "BTC/USD",
        0,
        10,
        T0,
    )


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (
            ("--exchange", "binance", "--symbol", "BTCUSDT", "--from-id", "1"),
            "needs --exchange, --symbol, --from-id and --to-id",
        ),
        (
            ("--exchange", "kraken", "--symbol", "BTC/USD", "--from-id", "1", "--to-id", "2"),
            "pages by time, so a range needs --after",
        ),
        (
            ("--exchange", "binance", "--symbol", "BTCUSDT", "--from-id", "1", "--to-id", "2", "--after", "noon"),
            "is not an ISO 8601",
        ),
        (("--exchange", "bitfinex", "--symbol", "X", "--from-id", "1", "--to-id", "2"), "unknown exchange 'bitfinex'"),
        (
            (
                "--after",
                "2026-11-30T12:00:00Z",
            ),
            "--after and --before belong to a range",
        ),
    ],
)
def test_bad_command_lines_name_the_fix(tmp_path, argv: tuple[str, ...], message: str) -> None:
    with pytest.raises(K2Error, match=re.escape(message)):
        gaps_to_repair(Settings.from_env({"K2_HOME": str(tmp_path)}), args(*argv))


# --- the Airflow task -------------------------------------------------------------------------------
def test_the_task_is_skipped_while_repair_is_off(monkeypatch: pytest.MonkeyPatch, tmp_path) -> None:
    from airflow.sdk.exceptions import AirflowSkipException

    from k2.airflow.operators.gap_repair import GapRepairOperator

    monkeypatch.setenv("K2_HOME", str(tmp_path))
    monkeypatch.delenv("K2_GAPS_REPAIR", raising=False)
    with pytest.raises(AirflowSkipException, match="K2_GAPS_REPAIR is off"):
        GapRepairOperator(task_id="repair_gaps", exchange="binance").execute({})


def test_the_task_repairs_the_exchanges_open_gaps_and_fails_when_one_failed(
    monkeypatch: pytest.MonkeyPatch, tmp_path
) -> None:
    import sys
    import types

    from airflow.sdk.exceptions import AirflowException

    import k2.gaps.repair
    from k2.airflow.operators.gap_repair import GapRepairOperator
    from k2.gaps.repair import RepairReport

    monkeypatch.setenv("K2_HOME", str(tmp_path))
    monkeypatch.setenv("K2_GAPS_REPAIR", "on")
    asked: list[tuple[str | None, list[Gap], threading.Event]] = []
    open_gaps = [gap("binance", 1, 5), gap("binance", 9, 9)]
    store = types.ModuleType("k2.gaps.store")
    store.open_gaps = lambda settings, exchange=None: [g for g in open_gaps if g.exchange == exchange]
    monkeypatch.setitem(sys.modules, "k2.gaps.store", store)  # gap detection's module (another branch)
    outcome = {"error": None}

    def repair(settings: Settings, gaps: list[Gap], *, stop: threading.Event, progress: Any) -> RepairReport:
        asked.append(("binance", gaps, stop))
        return RepairReport([GapRepair(g, fetched=1, published=1, error=outcome["error"]) for g in gaps])

    monkeypatch.setattr(k2.gaps.repair, "repair_gaps", repair)
    operator = GapRepairOperator(task_id="repair_gaps", exchange="binance")
    result = operator.execute({})
    assert asked[0][1] == open_gaps and result["published"] == 2 and result["ok"] is True
    operator.on_kill()
    assert asked[0][2].is_set()  # a kill reaches the repair's stop event
    outcome["error"] = "HTTP 400"
    with pytest.raises(AirflowException, match="2 of 2 binance gap repairs failed"):
        GapRepairOperator(task_id="repair_gaps", exchange="binance").execute({})
