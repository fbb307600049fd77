"""Pure logic of the live feed: the reconnect backoff schedule, frame decisions, URL resolution."""

from __future__ import annotations

import random

import pytest

from k2.errors import K2Error
from k2.exchanges import Frame, FrameKind, get_exchange, resolve_symbols
from k2.exchanges.kraken import Kraken
from k2.feeds.live import Backoff, plan_frame, resolve_url
from k2.settings import Settings
from tests.fakes.exchange_servers import binance_trade, kraken_trades


def test_backoff_ceiling_doubles_from_base_up_to_cap() -> None:
    backoff = Backoff(base_s=0.5, cap_s=30.0, rng=random.Random(1))
    ceilings = []
    for _ in range(10):
        ceilings.append(backoff.ceiling())
        backoff.next_delay()
    assert ceilings == [0.5, 1.0, 2.0, 4.0, 8.0, 16.0, 30.0, 30.0, 30.0, 30.0]


def test_backoff_delays_are_full_jitter_within_bounds() -> None:
    backoff = Backoff(base_s=0.5, cap_s=30.0, rng=random.Random(7))
    for attempt in range(200):
        bound = backoff.ceiling()
        delay = backoff.next_delay()
        assert 0.0 <= delay <= bound <= 30.0, (attempt, delay, bound)
    # full jitter: delays at one attempt spread over the whole interval, not clustered at the top
    first = []
    for _ in range(300):
        backoff.reset()
        first.append(backoff.next_delay())
    assert min(first) < 0.05 and max(first) > 0.45 and all(d <= 0.5 for d in first)


def test_backoff_reset_starts_over_and_huge_attempt_counts_do_not_overflow() -> None:
    backoff = Backoff(base_s=0.5, cap_s=30.0)
    backoff.attempt = 10_000
    assert backoff.ceiling() == 30.0 and backoff.next_delay() <= 30.0
    backoff.reset()
    assert backoff.attempt == 0 and backoff.ceiling() == 0.5


@pytest.mark.parametrize(
    ("exchange", "frame", "kind", "publish", "key"),
    [
        ("binance", binance_trade("BTCUSDT", 1), FrameKind.TRADES, True, b"BTCUSDT"),
        ("binance", b'{"stream":"btcusdt@trade","data":{"e":"trade"', FrameKind.UNKNOWN, True, b""),
        (
            "binance",
            b'{"stream":"btcusdt@aggTrade","data":{"e":"aggTrade","s":"BTCUSDT"}}',
            FrameKind.UNKNOWN,
            True,
            b"BTCUSDT",
        ),
        ("binance", b"\xff\xfe not utf-8", FrameKind.UNKNOWN, True, b""),
        ("binance", b'{"error":{"code":2,"msg":"Invalid request"}}', FrameKind.ERROR, False, b""),
        ("binance", b'{"result":null,"id":1}', FrameKind.CONTROL, False, b""),
        ("kraken", kraken_trades("ETH/USD", [1, 2, 3]), FrameKind.TRADES, True, b"ETH/USD"),
        ("kraken", '{"channel":"heartbeat"}', FrameKind.HEARTBEAT, False, b""),
        ("kraken", '{"method":"pong","req_id":3}', FrameKind.CONTROL, False, b""),
        ("kraken", '{"error":"Currency pair not supported","success":false}', FrameKind.ERROR, False, b""),
        ("kraken", "[1, 2, 3]", FrameKind.UNKNOWN, True, b""),
    ],
)
def test_trades_and_unknown_frames_are_published_the_rest_only_counted(
    exchange: str, frame: str | bytes, kind: FrameKind, publish: bool, key: bytes
) -> None:
    action = plan_frame(get_exchange(exchange), frame)
    assert (action.kind, action.publish, action.key) == (kind, publish, key)


def test_a_classifier_that_raises_keeps_the_frame_as_unknown() -> None:
    class Broken(Kraken):
        def classify(self, frame: str | bytes) -> Frame:
            raise RuntimeError("bug")

    action = plan_frame(Broken(), b'{"channel":"trade"}')
    assert (action.kind, action.publish, action.key) == (FrameKind.UNKNOWN, True, b"")


def _settings(**env: str) -> Settings:
    return Settings.from_env(env)


def test_url_precedence_argument_then_environment_then_default(monkeypatch: pytest.MonkeyPatch) -> None:
    binance = get_exchange("binance")
    settings = _settings()
    monkeypatch.delenv("K2_BINANCE_WS_URL", raising=False)
    assert resolve_url(settings, binance, ["BTCUSDT"]) == "wss://stream.binance.com:9443/stream?streams=btcusdt@trade"
    monkeypatch.setenv("K2_BINANCE_WS_URL", "ws://127.0.0.1:1/stream")
    assert (
        resolve_url(settings, binance, ["BTCUSDT", "ETHBTC"])
        == "ws://127.0.0.1:1/stream?streams=btcusdt@trade/ethbtc@trade"
    )
    assert resolve_url(settings, binance, ["BTCUSDT"], "ws://h:2/stream") == "ws://h:2/stream?streams=btcusdt@trade"


@pytest.mark.parametrize(
    "url", ["http://127.0.0.1:1/v2", "not a url", "ws://", "wss://host:99999/v2", "ws://host:port/v2"]
)
def test_a_url_that_can_never_work_is_a_k2error_with_a_fix(url: str) -> None:
    with pytest.raises(K2Error) as err:
        resolve_url(_settings(), get_exchange("kraken"), ["BTC/USD"], url)
    assert "ws://" in err.value.fix and "K2_KRAKEN_WS_URL" in err.value.fix


def test_symbols_come_from_the_argument_then_the_environment_then_the_defaults(monkeypatch: pytest.MonkeyPatch) -> None:
    kraken = get_exchange("kraken")
    monkeypatch.delenv("K2_KRAKEN_SYMBOLS", raising=False)
    assert resolve_symbols(_settings(), kraken, None) == list(kraken.default_symbols)
    monkeypatch.setenv("K2_KRAKEN_SYMBOLS", "BTC/USD, ETH/BTC")
    assert resolve_symbols(_settings(), kraken, None) == ["BTC/USD", "ETH/BTC"]
    assert resolve_symbols(_settings(), kraken, ["SOL/USD"]) == ["SOL/USD"]
    with pytest.raises(K2Error):
        resolve_symbols(_settings(), kraken, ["BTCUSD"])
