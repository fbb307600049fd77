"""Kraken WebSocket v2: the ``trade`` channel.

Payload (unchanged in Kafka): ``{"channel": "trade", "type": "snapshot"|"update", "data": [{"symbol":
"BTC/USD", "side": "buy"|"sell", "price": 68000.1, "qty": 0.01, "ord_type": "market"|"limit",
"trade_id": 123, "timestamp": "2024-01-01T00:00:00.123456Z"}, ...]}``. One message carries a batch of
trades; prices and quantities are JSON numbers; trade ids are unique per book. The server sends a
heartbeat frame about every second while subscribed; the client may ping with ``{"method": "ping"}``.

REST history (gap repair): ``GET /0/public/Trades?pair=&since=&count=`` (public, no key; about one
request a second) answers ``{"error": [], "result": {<pair>: [[price, volume, time (s, float), "b"|"s",
"m"|"l", misc, trade_id], ...], "last": "<ns>"}}``, at most 1000 trades after ``since`` (seconds or
nanoseconds); ``last`` is the next page's ``since``. Over its limit Kraken answers the error
``EAPI:Rate limit exceeded`` (or ``EGeneral:Too many requests``), often with HTTP 200.
"""

from __future__ import annotations

import datetime as dt
import functools
import json
import re
from decimal import Decimal, InvalidOperation
from typing import Any, ClassVar
from urllib.parse import urlencode

from k2.errors import K2Error
from k2.exchanges.base import (
    Exchange,
    Frame,
    FrameKind,
    Instrument,
    RestPage,
    RestRateLimited,
    RestTrade,
    TradeBatch,
    loads_or_none,
)
from k2.exchanges.rules import INT64_MAX, TradeRules, integer, number, string


def _number(chars: int) -> str:
    """A JSON number without exponent of at most ``chars`` characters, spelled without lookahead so
    that Java's, Python's and RE2's (DuckDB's) regular expressions all read it."""
    fractions = [
        f"{'[0-9]' if n == 1 else f'[1-9][0-9]{{{n - 1}}}'}\\.[0-9]{{1,{chars - n - 1}}}" for n in range(1, chars - 1)
    ]
    return f"(?:{'|'.join(fractions)}|0|[1-9][0-9]{{0,{chars - 1}}})"


# a JSON number of at most 15 digits (so the STRING parse, which goes through a double, keeps it exact)
_NUMBER = _number(15)
_TRADE = (
    r'\{"symbol":"[^"\\]*","side":"(?:buy|sell)","price":' + _NUMBER + r',"qty":' + _NUMBER + r","
    r'"ord_type":"(?:market|limit)","trade_id":(?:0|[1-9][0-9]{0,17}),"timestamp":"[^"\\]*"\}'
)
# What Kraken sends, in its layout (keys in this order, no whitespace), every value of its documented
# type: trade ids below 1e18, strings without escapes. Messages that match are parsed once.
# the REST API's names of assets whose WebSocket v2 name differs (pairs are BASEQUOTE of these)
_REST_ASSETS = {"BTC": "XBT", "DOGE": "XDG"}
_RATE_LIMITED = ("EAPI:Rate limit exceeded", "EGeneral:Too many requests")
CANONICAL = r'^\{"channel":"trade","type":"(?:snapshot|update)","data":\[' + _TRADE + "(?:," + _TRADE + r")*\]\}$"


class Kraken(Exchange):
    name = "kraken"
    payload_format = "kraken.v2-trade.v1"
    price_field = "price"
    # a batch of trades per message, under "data"; every field of its documented JSON type
    rules = TradeRules(
        canonical=CANONICAL,
        many=True,
        tag=("channel", "trade"),
        message_type=string(
            "type", "message type", "invalid_message_type", "snapshot", "update", expected='"snapshot" or "update"'
        ),
        fields=(
            string("symbol", "symbol", "invalid_symbol"),
            string("side", "side", "invalid_side", "buy", "sell", expected='"buy" or "sell"'),
            number("price", "price", "invalid_price"),
            number("qty", "quantity", "invalid_quantity"),
            # not used, so it may be absent, but not of another kind
            string("ord_type", "order type", "invalid_order_type", "market", "limit", expected='"market" or "limit"'),
            integer("trade_id", "trade id", "invalid_trade_id", 0, INT64_MAX),
            string(
                "timestamp",
                "trade time",
                "invalid_timestamp",
                expected="an RFC 3339 time (2024-01-01T00:00:00.1Z)",
                as_time=True,
            ),
        ),
        symbol="symbol",
        trade_id="trade_id",
        price="price",
        quantity="qty",
        time="timestamp",
        time_format="rfc3339",
        side="side",
    )
    default_ws_url = "wss://ws.kraken.com/v2"
    instruments: ClassVar[dict[str, Instrument]] = {
        i.symbol: i
        for i in (
            Instrument("BTC/USD", "BTC", "USD", 1, 8, 65000.0, 0.01),
            Instrument("ETH/USD", "ETH", "USD", 2, 8, 3200.0, 0.2),
            Instrument("SOL/USD", "SOL", "USD", 2, 8, 150.0, 3.0),
            Instrument("BTC/EUR", "BTC", "EUR", 1, 8, 60000.0, 0.01),
            Instrument("ETH/BTC", "ETH", "BTC", 5, 8, 0.0492, 0.3),
        )
    }
    default_symbols = ("BTC/USD", "ETH/USD", "SOL/USD", "BTC/EUR", "ETH/BTC")
    idle_timeout_s = 10.0  # heartbeats arrive every second; ten silent seconds mean a dead link
    ping_interval_s = 30.0
    max_trades_per_message = 8
    default_rest_url = "https://api.kraken.com"
    rest_pages_by = "time"
    rest_request_interval_s = 1.0  # public endpoints: about one call a second per IP

    def split_symbol(self, symbol: str) -> tuple[str, str]:
        match = re.fullmatch(r"([A-Z0-9]{2,12})/([A-Z0-9]{2,12})", symbol)
        if not match:
            raise K2Error(
                f"{symbol!r} is not a Kraken v2 symbol (BASE/QUOTE, e.g. BTC/USD)",
                f"use symbols like {', '.join(self.default_symbols[:3])}.",
            )
        return match.group(1), match.group(2)

    def connect_url(self, base_url: str, symbols: list[str]) -> str:
        return base_url

    def subscribe_frames(self, symbols: list[str]) -> list[str]:
        return [
            json.dumps({"method": "subscribe", "params": {"channel": "trade", "symbol": symbols, "snapshot": True}})
        ]

    def ping_frame(self, req_id: int) -> str | None:
        return json.dumps({"method": "ping", "req_id": req_id})

    def classify(self, frame: str | bytes) -> Frame:
        msg = loads_or_none(frame)
        if not isinstance(msg, dict):
            return Frame(FrameKind.UNKNOWN)
        channel = msg.get("channel")
        if channel == "trade" and isinstance(msg.get("data"), list):
            first = msg["data"][0] if msg["data"] and isinstance(msg["data"][0], dict) else {}
            return Frame(FrameKind.TRADES, str(first.get("symbol", "")))
        if channel == "heartbeat":
            return Frame(FrameKind.HEARTBEAT)
        if msg.get("success") is False or "error" in msg:
            return Frame(FrameKind.ERROR)
        if channel == "status" or msg.get("method") in ("subscribe", "unsubscribe", "pong"):
            return Frame(FrameKind.CONTROL)
        return Frame(FrameKind.UNKNOWN)

    def render(self, batch: TradeBatch) -> list[bytes]:
        items = [
            f'{{"symbol":"{s}","side":"{"buy" if buy else "sell"}","price":{p},"qty":{q},'
            f'"ord_type":"{"limit" if t % 3 == 0 else "market"}","trade_id":{t},'
            f'"timestamp":"{_rfc3339(us)}"}}'
            for s, t, p, q, us, buy in zip(
                batch.symbol, batch.trade_id, batch.price, batch.qty, batch.event_time_us, batch.is_buy, strict=True
            )
        ]
        payloads, start = [], 0
        for i, size in enumerate(batch.sizes):
            kind = "snapshot" if i in batch.snapshot else "update"
            data = ",".join(items[start : start + size])
            payloads.append(f'{{"channel":"trade","type":"{kind}","data":[{data}]}}'.encode())
            start += size
        return payloads

    def event_times_us(self, payload: bytes) -> list[int]:
        try:
            items = json.loads(payload)["data"]
            return [_parse_rfc3339_us(item["timestamp"]) for item in items]
        except (ValueError, UnicodeDecodeError, KeyError, TypeError) as exc:
            raise ValueError(f"not a Kraken trade payload: {exc}") from None

    # --- REST history ------------------------------------------------------------------------------
    def rest_request(self, base_url: str, symbol: str, cursor: int, last_id: int) -> str:
        base, quote = self.split_symbol(symbol)
        pair = _REST_ASSETS.get(base, base) + _REST_ASSETS.get(quote, quote)
        return f"{base_url.rstrip('/')}/0/public/Trades?{urlencode({'pair': pair, 'since': cursor, 'count': 1000})}"

    def rest_page(self, body: bytes) -> RestPage:
        answer = json.loads(body, parse_float=Decimal)  # times keep their microseconds exactly
        if not isinstance(answer, dict):
            raise ValueError(f"expected an object, got {type(answer).__name__}")
        errors = answer.get("error") or []
        if any(str(e).startswith(_RATE_LIMITED) for e in errors):
            raise RestRateLimited(", ".join(map(str, errors)))
        if errors:
            raise ValueError(f"Kraken answered {', '.join(map(str, errors))[:300]}")
        result = answer.get("result")
        if not isinstance(result, dict) or "last" not in result:
            raise ValueError(f"no result with a 'last' cursor in {body[:200]!r}")
        rows = [row for key, value in result.items() if key != "last" for row in value]
        try:
            cursor = int(result["last"])
        except (TypeError, ValueError):
            raise ValueError(f"'last' is not a nanosecond time: {result['last']!r}") from None
        return RestPage([_rest_trade(row) for row in rows], cursor)

    def render_rest(self, symbol: str, trade: RestTrade) -> bytes:
        # one trade per update message (the live feed batches only trades of one match)
        side = "buy" if trade.is_buy else "sell"
        return (
            f'{{"channel":"trade","type":"update","data":[{{"symbol":"{symbol}","side":"{side}",'
            f'"price":{trade.price},"qty":{trade.qty},"ord_type":"{trade.order_type}",'
            f'"trade_id":{trade.trade_id},"timestamp":"{_rfc3339(trade.event_time_us)}"}}]}}'
        ).encode()


def _rest_trade(row: Any) -> RestTrade:
    """``[price, volume, time, side, order type, misc, trade_id]`` -> a trade with v2's values:
    prices as JSON numbers without trailing zeros, sides and order types spelt out."""
    try:
        price, volume, seconds, side, order_type, _misc, trade_id = row
        if not isinstance(trade_id, int) or isinstance(trade_id, bool) or side not in ("b", "s"):
            raise ValueError("trade_id must be an integer, side b or s")
        if order_type not in ("m", "l"):
            raise ValueError("order type must be m or l")
        time_us = int(Decimal(seconds) * 1_000_000)
        return RestTrade(
            trade_id,
            _plain_number(price),
            _plain_number(volume),
            time_us,
            side == "b",
            order_type="market" if order_type == "m" else "limit",
        )
    except (TypeError, ValueError, InvalidOperation) as exc:
        raise ValueError(f"not a Kraken trade row ({exc}): {str(row)[:200]}") from None


def _plain_number(text: Any) -> str:
    """Kraken's decimal string ("30243.40000") as v2 writes the number (30243.4), exactly."""
    if not isinstance(text, str):
        raise ValueError(f"{text!r} is not a decimal string")
    value = Decimal(text)
    if not value.is_finite() or value < 0:
        raise ValueError(f"{text!r} is not a non-negative decimal")
    return format(value.normalize(), "f")


def _parse_rfc3339_us(text: str) -> int:
    moment = dt.datetime.fromisoformat(text.replace("Z", "+00:00"))
    return int(moment.timestamp()) * 1_000_000 + moment.microsecond


@functools.lru_cache(maxsize=4096)
def _rfc3339_second(seconds: int) -> str:
    return dt.datetime.fromtimestamp(seconds, dt.UTC).strftime("%Y-%m-%dT%H:%M:%S")


def _rfc3339(us: int) -> str:
    """RFC 3339 with microseconds, UTC; the second part is cached since trades cluster in time."""
    return f"{_rfc3339_second(us // 1_000_000)}.{us % 1_000_000:06d}Z"
