"""Binance spot: ``<symbol>@trade`` streams through the combined-stream endpoint.

Payload (unchanged in Kafka): ``{"stream": "btcusdt@trade", "data": {"e": "trade", "E": event ms,
"s": "BTCUSDT", "t": trade id, "p": "price", "q": "qty", "T": trade ms, "m": buyer is maker,
"M": true}}``; prices and quantities are decimal strings, trade ids are unique per symbol only.
The server pings every 20 s (answered by the WebSocket layer) and closes connections after 24 h.

REST history (gap repair): ``GET /api/v3/historicalTrades?symbol=&fromId=&limit=`` (weight 25, at
most 1000 trades from ``fromId`` up, no API key; not served by the data-api.binance.vision mirror)
answers ``[{"id", "price", "qty", "quoteQty", "time" (ms), "isBuyerMaker", "isBestMatch"}, ...]``.
"""

from __future__ import annotations

import json
import re
from typing import Any, ClassVar
from urllib.parse import urlencode

from k2.errors import K2Error
from k2.exchanges.base import Exchange, Frame, FrameKind, Instrument, RestPage, RestTrade, TradeBatch, loads_or_none
from k2.exchanges.rules import INT64_MAX, MAX_EPOCH_MS, TradeRules, boolean, integer, string

# What Binance sends, in its layout (keys in this order, no whitespace), every value of its documented
# type: integers that fit their range (ids below 1e18, times below 1e14 ms, year 5138), strings
# without escapes. Payloads that match are parsed once and need no type checks (k2.exchanges.spark).
CANONICAL = (
    r'^\{"stream":"[^"\\]*","data":\{"e":"trade","E":(?:0|[1-9][0-9]{0,13}),"s":"[^"\\]*",'
    r'"t":(?:0|[1-9][0-9]{0,17}),"p":"[^"\\]*","q":"[^"\\]*","T":(?:0|[1-9][0-9]{0,13}),'
    r'"m":(?:true|false),"M":(?:true|false)\}\}$'
)
_DECIMAL = re.compile(r"^[0-9]{1,30}(?:\.[0-9]{1,30})?$")
_QUOTES = ("USDT", "USDC", "FDUSD", "BUSD", "TUSD", "BTC", "ETH", "BNB", "EUR", "TRY", "BRL", "JPY")


class Binance(Exchange):
    name = "binance"
    payload_format = "binance.combined-trade.v1"
    price_field = "p"
    # one trade per message, under "data"; every field of its documented JSON type and range
    rules = TradeRules(
        canonical=CANONICAL,
        many=False,
        tag=("e", "trade"),
        fields=(
            string("s", "symbol", "invalid_symbol"),
            integer("t", "trade id", "invalid_trade_id", 0, INT64_MAX),
            string("p", "price", "invalid_price", expected="a decimal string"),
            string("q", "quantity", "invalid_quantity", expected="a decimal string"),
            integer("T", "trade time, epoch ms", "invalid_timestamp", 0, MAX_EPOCH_MS, "timestamp_out_of_range"),
            boolean("m", "buyer is maker", "invalid_side"),
            # E is not used, but a wrong one still means the message is not what Binance sends
            integer("E", "event time, epoch ms", "invalid_timestamp", 0, MAX_EPOCH_MS, "timestamp_out_of_range"),
        ),
        symbol="s",
        trade_id="t",
        price="p",
        quantity="q",
        time="T",
        time_format="epoch_ms",
        side="m",
        side_map=(("true", "sell"), ("false", "buy")),  # the buyer was the maker: the aggressor sold
    )
    default_ws_url = "wss://stream.binance.com:9443/stream"
    instruments: ClassVar[dict[str, Instrument]] = {
        i.symbol: i
        for i in (
            Instrument("BTCUSDT", "BTC", "USDT", 2, 5, 65000.0, 0.01),
            Instrument("ETHUSDT", "ETH", "USDT", 2, 4, 3200.0, 0.1),
            Instrument("SOLUSDT", "SOL", "USDT", 2, 3, 150.0, 2.0),
            Instrument("BNBUSDT", "BNB", "USDT", 2, 3, 580.0, 0.5),
            Instrument("XRPUSDT", "XRP", "USDT", 4, 1, 0.55, 800.0),
            Instrument("ETHBTC", "ETH", "BTC", 5, 4, 0.0492, 0.2),
        )
    }
    default_symbols = ("BTCUSDT", "ETHUSDT", "SOLUSDT", "BNBUSDT", "XRPUSDT", "ETHBTC")
    idle_timeout_s = 60.0  # Binance pings every 20 s; a minute of silence means a dead link
    max_connection_age_s = 23.5 * 3600  # reconnect before the 24 h cut-off, on our own terms
    default_rest_url = "https://api.binance.com"
    rest_pages_by = "id"
    # 6,000 weight a minute per IP; at weight 25 a request every 0.5 s uses half of it, leaving the rest
    rest_request_interval_s = 0.5
    rest_page_size = 1000

    def split_symbol(self, symbol: str) -> tuple[str, str]:
        if re.fullmatch(r"[A-Z0-9]{2,20}", symbol):
            for quote in _QUOTES:
                if symbol.endswith(quote) and len(symbol) > len(quote):
                    return symbol[: -len(quote)], quote
        raise K2Error(
            f"{symbol!r} is not a Binance spot symbol (upper case BASEQUOTE, e.g. BTCUSDT)",
            f"use symbols like {', '.join(self.default_symbols[:3])}.",
        )

    def connect_url(self, base_url: str, symbols: list[str]) -> str:
        streams = "/".join(f"{s.lower()}@trade" for s in symbols)
        return f"{base_url}?streams={streams}"

    def subscribe_frames(self, symbols: list[str]) -> list[str]:
        return []  # the combined-stream URL subscribes

    def classify(self, frame: str | bytes) -> Frame:
        msg = loads_or_none(frame)
        if not isinstance(msg, dict):
            return Frame(FrameKind.UNKNOWN)
        data = msg.get("data")
        if isinstance(data, dict) and data.get("e") == "trade":
            return Frame(FrameKind.TRADES, str(data.get("s", "")))
        if "error" in msg or (isinstance(data, dict) and "code" in data):
            return Frame(FrameKind.ERROR)
        if "id" in msg and "result" in msg:
            return Frame(FrameKind.CONTROL)
        return Frame(FrameKind.UNKNOWN, str(data.get("s", "")) if isinstance(data, dict) else "")

    def render(self, batch: TradeBatch) -> list[bytes]:
        # The simulator's hot path (benchmarks/feed_throughput.py): one f-string per trade over
        # per-symbol constant pieces. "E" is the event time, "T" the trade time (1 ms earlier);
        # "m" (buyer is maker) is true when the seller was the aggressor.
        head = {s: f'{{"stream":"{s.lower()}@trade","data":{{"e":"trade","E":' for s in set(batch.symbol)}
        mid = {s: f',"s":"{s}","t":' for s in head}
        tail = {True: ',"m":false,"M":true}}', False: ',"m":true,"M":true}}'}
        trade_ms = [us // 1000 for us in batch.event_time_us]
        return [
            f'{head[s]}{ms + 1}{mid[s]}{t},"p":"{p}","q":"{q}","T":{ms}{tail[buy]}'.encode()
            for s, t, p, q, ms, buy in zip(
                batch.symbol, batch.trade_id, batch.price, batch.qty, trade_ms, batch.is_buy, strict=True
            )
        ]

    def event_times_us(self, payload: bytes) -> list[int]:
        try:
            return [int(json.loads(payload)["data"]["T"]) * 1000]
        except (ValueError, UnicodeDecodeError, KeyError, TypeError) as exc:
            raise ValueError(f"not a Binance trade payload: {exc}") from None

    # --- REST history ------------------------------------------------------------------------------
    def rest_request(self, base_url: str, symbol: str, cursor: int, last_id: int) -> str:
        limit = max(1, min(self.rest_page_size, last_id - cursor + 1))
        query = urlencode({"symbol": symbol, "fromId": cursor, "limit": limit})
        return f"{base_url.rstrip('/')}/api/v3/historicalTrades?{query}"

    def rest_page(self, body: bytes) -> RestPage:
        rows = json.loads(body)
        if isinstance(rows, dict):  # {"code": -1121, "msg": "Invalid symbol."}
            raise ValueError(f"Binance answered {json.dumps(rows)[:300]}")
        if not isinstance(rows, list):
            raise ValueError(f"expected a list of trades, got {type(rows).__name__}")
        trades = [_rest_trade(row) for row in rows]
        return RestPage(trades, max(t.trade_id for t in trades) + 1 if trades else None)

    def render_rest(self, symbol: str, trade: RestTrade) -> bytes:
        # the REST history has no event time "E": the trade time stands in for it
        ms = trade.event_time_us // 1000
        return (
            f'{{"stream":"{symbol.lower()}@trade","data":{{"e":"trade","E":{ms},"s":"{symbol}","t":{trade.trade_id},'
            f'"p":"{trade.price}","q":"{trade.qty}","T":{ms},"m":{_json_bool(not trade.is_buy)},'
            f'"M":{_json_bool(trade.best_match)}}}}}'
        ).encode()


def _rest_trade(row: Any) -> RestTrade:
    try:
        trade_id, ms = row["id"], row["time"]
        price, qty, maker = row["price"], row["qty"], row["isBuyerMaker"]
        if not (isinstance(trade_id, int) and isinstance(ms, int) and isinstance(maker, bool)):
            raise TypeError("id and time must be integers, isBuyerMaker a boolean")
        if not (isinstance(price, str) and isinstance(qty, str) and _DECIMAL.match(price) and _DECIMAL.match(qty)):
            raise TypeError("price and qty must be decimal strings")
        return RestTrade(trade_id, price, qty, ms * 1000, not maker, best_match=row.get("isBestMatch", True) is True)
    except (KeyError, TypeError) as exc:
        raise ValueError(f"not a Binance historical trade ({exc}): {json.dumps(row)[:200]}") from None


def _json_bool(value: bool) -> str:
    return "true" if value else "false"
