import datetime as dt
import json

import pytest

from k2.errors import K2Error
from k2.exchanges import FrameKind, TradeBatch, available, get_exchange


def batch(symbol: str, *, sizes: list[int] | None = None, n: int = 1) -> TradeBatch:
    return TradeBatch(
        symbol=[symbol] * n,
        trade_id=list(range(100, 100 + n)),
        price=["65000.10"] * n,
        qty=["0.00100000"] * n,
        event_time_us=[1_700_000_000_123_456] * n,
        is_buy=[True, False] * (n // 2) + [True] * (n % 2),
        sizes=sizes or [1] * n,
    )


def test_registry_discovers_every_exchange() -> None:
    assert available() == ["binance", "kraken"]
    with pytest.raises(K2Error, match="unknown exchange 'ftx'"):
        get_exchange("ftx")


def test_binance_payload_is_the_combined_stream_envelope() -> None:
    (payload,) = get_exchange("binance").render(batch("BTCUSDT"))
    msg = json.loads(payload)
    assert msg["stream"] == "btcusdt@trade"
    assert msg["data"] == {
        "e": "trade",
        "E": 1_700_000_000_124,
        "s": "BTCUSDT",
        "t": 100,
        "p": "65000.10",
        "q": "0.00100000",
        "T": 1_700_000_000_123,
        "m": False,
        "M": True,
    }


def test_kraken_payload_batches_trades_with_rfc3339_times() -> None:
    payloads = get_exchange("kraken").render(batch("BTC/USD", n=3, sizes=[2, 1]))
    assert len(payloads) == 2
    first = json.loads(payloads[0])
    assert first["channel"] == "trade" and first["type"] == "update"
    assert [t["trade_id"] for t in first["data"]] == [100, 101]
    assert [t["side"] for t in first["data"]] == ["buy", "sell"]
    trade = first["data"][0]
    assert trade["price"] == 65000.1 and b'"price":65000.10' in payloads[0]  # a JSON number, as sent
    assert dt.datetime.fromisoformat(trade["timestamp"]) == dt.datetime(2023, 11, 14, 22, 13, 20, 123456, tzinfo=dt.UTC)


@pytest.mark.parametrize(
    ("exchange", "symbol", "normalised"),
    [
        ("binance", "BTCUSDT", "BTC-USDT"),
        ("binance", "ETHBTC", "ETH-BTC"),
        ("binance", "PEPEFDUSD", "PEPE-FDUSD"),
        ("kraken", "BTC/USD", "BTC-USD"),
        ("kraken", "ETH/BTC", "ETH-BTC"),
    ],
)
def test_symbols_normalise_to_one_convention(exchange: str, symbol: str, normalised: str) -> None:
    assert get_exchange(exchange).normalise_symbol(symbol) == normalised


@pytest.mark.parametrize(
    ("exchange", "symbol"),
    [("binance", "btcusdt"), ("binance", "BTC/USDT"), ("kraken", "BTCUSD"), ("kraken", "btc/usd")],
)
def test_malformed_symbols_are_rejected(exchange: str, symbol: str) -> None:
    with pytest.raises(K2Error, match="is not a"):
        get_exchange(exchange).validate_symbols([symbol], simulated=False)


def test_simulator_only_models_known_instruments() -> None:
    with pytest.raises(K2Error, match="no model for 'DOGEUSDT'"):
        get_exchange("binance").validate_symbols(["DOGEUSDT"], simulated=True)


@pytest.mark.parametrize(
    ("exchange", "frame", "kind", "key"),
    [
        ("binance", '{"stream":"btcusdt@trade","data":{"e":"trade","s":"BTCUSDT"}}', FrameKind.TRADES, "BTCUSDT"),
        ("binance", '{"result":null,"id":1}', FrameKind.CONTROL, ""),
        ("binance", '{"stream":"x","data":{"e":"trade"', FrameKind.UNKNOWN, ""),
        ("binance", b"\xff\xfe", FrameKind.UNKNOWN, ""),
        ("kraken", '{"channel":"trade","type":"update","data":[{"symbol":"BTC/USD"}]}', FrameKind.TRADES, "BTC/USD"),
        ("kraken", '{"channel":"heartbeat"}', FrameKind.HEARTBEAT, ""),
        ("kraken", '{"method":"subscribe","success":true,"result":{}}', FrameKind.CONTROL, ""),
        ("kraken", '{"method":"subscribe","success":false,"error":"bad symbol"}', FrameKind.ERROR, ""),
        ("kraken", "[1,2,3]", FrameKind.UNKNOWN, ""),
    ],
)
def test_frames_are_classified_without_raising(exchange: str, frame, kind: FrameKind, key: str) -> None:
    result = get_exchange(exchange).classify(frame)
    assert result.kind is kind
    assert result.key == key
