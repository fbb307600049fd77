"""Local stand-ins for the exchanges' public REST trade history, speaking each exchange's protocol.

Each server holds trades in memory and answers as the exchange documents it: Binance's
``/api/v3/historicalTrades`` (trades from ``fromId`` up, at most ``limit``), Kraken's
``/0/public/Trades`` (trades after ``since``, seconds or nanoseconds, at most ``count``, and ``last``,
the next ``since``). Scripting from the test thread:

* :meth:`fail_next` queues answers given before the real ones (HTTP 429 with ``Retry-After``, a 5xx,
  Kraken's rate-limit error with HTTP 200, ...), one request each;
* ``page_cap`` makes pages shorter than asked (partial pages), as a loaded exchange does.

Every request's path and query are recorded for assertions. Payloads are written from the
exchanges' documentation, independent of ``k2.exchanges``.
"""

from __future__ import annotations

import json
import threading
from collections import deque
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

from tests.fakes import LoopbackServer


@dataclass(frozen=True)
class Trade:
    trade_id: int
    price: str
    qty: str
    time_us: int
    buyer_is_maker: bool


def make_trades(first_id: int, count: int, start_us: int, step_us: int = 10_000) -> list[Trade]:
    """``count`` trades with consecutive ids, ``step_us`` apart, prices on a 0.01 grid."""
    return [
        Trade(
            first_id + i,
            f"{65000 + (i % 97) * 0.01:.2f}",
            f"0.{(i % 9) + 1:03d}00",
            start_us + i * step_us,
            i % 3 == 0,
        )
        for i in range(count)
    ]


class FakeRestServer(LoopbackServer):
    def __init__(self) -> None:
        self.requests: list[tuple[str, dict[str, str]]] = []  # (path, query)
        self.page_cap: int | None = None
        self._faults: deque[tuple[int, dict[str, str], bytes]] = deque()
        self._lock = threading.Lock()
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                parts = urlsplit(self.path)
                query = {k: v[0] for k, v in parse_qs(parts.query).items()}
                with server._lock:
                    server.requests.append((parts.path, query))
                    fault = server._faults.popleft() if server._faults else None
                status, headers, body = fault or server.answer(parts.path, query)
                self.send_response(status)
                for name, value in {"Content-Type": "application/json", **headers}.items():
                    self.send_header(name, value)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: Any) -> None:
                pass

        self.serve(ThreadingHTTPServer(("127.0.0.1", 0), Handler))

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    def fail_next(self, status: int, body: bytes | dict | list = b"", headers: dict[str, str] | None = None) -> None:
        raw = body if isinstance(body, bytes) else json.dumps(body).encode()
        with self._lock:
            self._faults.append((status, headers or {}, raw))

    def queries(self, path: str) -> list[dict[str, str]]:
        return [q for p, q in self.requests if p == path]

    def answer(self, path: str, query: dict[str, str]) -> tuple[int, dict[str, str], bytes]:
        raise NotImplementedError

    def _cap(self, n: int) -> int:
        return min(n, self.page_cap) if self.page_cap else n


class FakeBinanceRest(FakeRestServer):
    """``GET /api/v3/historicalTrades?symbol=&fromId=&limit=`` over ``trades`` per symbol."""

    PATH = "/api/v3/historicalTrades"

    def __init__(self, trades: dict[str, list[Trade]]) -> None:
        super().__init__()
        self.trades = trades

    def answer(self, path: str, query: dict[str, str]) -> tuple[int, dict[str, str], bytes]:
        if path != self.PATH:
            return 404, {}, b'{"code":-1,"msg":"not found"}'
        if query.get("symbol") not in self.trades:
            return 400, {}, b'{"code":-1121,"msg":"Invalid symbol."}'
        limit = int(query.get("limit", 500))
        if not 1 <= limit <= 1000:
            return 400, {}, b'{"code":-1100,"msg":"Illegal characters found in parameter \'limit\'."}'
        start = int(query.get("fromId", 0))
        rows = [t for t in self.trades[query["symbol"]] if t.trade_id >= start][: self._cap(limit)]
        body = [
            {
                "id": t.trade_id,
                "price": t.price,
                "qty": t.qty,
                "quoteQty": f"{float(t.price) * float(t.qty):.8f}",
                "time": t.time_us // 1000,
                "isBuyerMaker": t.buyer_is_maker,
                "isBestMatch": True,
            }
            for t in rows
        ]
        return 200, {"X-MBX-USED-WEIGHT-1M": str(25 * len(self.requests))}, json.dumps(body).encode()


class FakeKrakenRest(FakeRestServer):
    """``GET /0/public/Trades?pair=&since=&count=`` over ``trades`` per REST pair name (``XBTUSD``),
    answered under the pair's internal name (``XXBTZUSD``) as Kraken does."""

    PATH = "/0/public/Trades"

    def __init__(self, trades: dict[str, list[Trade]], result_keys: dict[str, str]) -> None:
        super().__init__()
        self.trades = trades
        self.result_keys = result_keys

    def answer(self, path: str, query: dict[str, str]) -> tuple[int, dict[str, str], bytes]:
        if path != self.PATH:
            return 404, {}, b""
        pair = query.get("pair", "")
        if pair not in self.trades:
            return 200, {}, b'{"error":["EQuery:Unknown asset pair"]}'
        count = int(query.get("count", 1000))
        since = int(query.get("since", 0))
        since_ns = since * 1_000_000_000 if since < 10**12 else since  # seconds or nanoseconds
        rows = [t for t in self.trades[pair] if t.time_us * 1000 > since_ns][: self._cap(count)]
        last = rows[-1].time_us * 1000 if rows else since_ns
        result = {
            self.result_keys[pair]: [
                [f"{t.price}000", f"{t.qty}000", t.time_us / 1e6, "s" if t.buyer_is_maker else "b", "l", "", t.trade_id]
                for t in rows
            ],
            "last": str(last),
        }
        return 200, {}, json.dumps({"error": [], "result": result}).encode()
