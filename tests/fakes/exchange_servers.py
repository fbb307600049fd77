"""Local stand-ins for the exchanges' WebSocket endpoints, speaking each exchange's live protocol.

Each server runs its own event loop in a background thread on 127.0.0.1 (a port the OS picks) and is
scripted from the test thread:

* :meth:`send` queues frames; they go out in order on the current connection, and a frame not yet
  written when a connection dies goes out on the next one (as a live exchange keeps trading);
* :meth:`drop_after` aborts the connection (TCP close, no WebSocket close frame) after N more
  queued frames were written;
* :meth:`go_silent` makes the current connection send nothing at all any more (no data, heartbeats
  or pongs) while staying open, as a half-dead link does.

Everything clients sent, each connection's request path and close code, and every answered
WebSocket ping are recorded for assertions.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Any, Self
from urllib.parse import parse_qs, urlsplit

from websockets.asyncio.server import ServerConnection, serve
from websockets.exceptions import ConnectionClosed
from websockets.http11 import Request, Response

Frame = str | bytes


@dataclass
class _Conn:
    number: int
    ws: ServerConnection
    subscribed: asyncio.Event = field(default_factory=asyncio.Event)
    silent: bool = False


class FakeExchangeServer:
    path = "/"

    def __init__(self, *, ping_interval_s: float | None = None) -> None:
        self.ping_interval_s = ping_interval_s  # WebSocket-level pings from the server
        self.port = 0
        self.connections = 0
        self.received: list[tuple[int, str]] = []  # (connection number, message)
        self.paths: list[str] = []
        self.close_codes: list[int | None] = []  # one per finished connection
        self.pongs = 0  # answers to our WebSocket pings
        self.frames_written = 0
        self._outbox: deque[tuple[bytes, bool]] = deque()  # (payload, is text)
        self._drop_after: int | None = None
        self._current: _Conn | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._ready = threading.Event()
        self._thread: threading.Thread | None = None

    # --- lifecycle ---------------------------------------------------------------------------------
    @property
    def url(self) -> str:
        return f"ws://127.0.0.1:{self.port}{self.path}"

    def start(self) -> Self:
        self._thread = threading.Thread(
            target=asyncio.run, args=(self._serve(),), daemon=True, name=f"fake-{type(self).__name__}"
        )
        self._thread.start()
        if not self._ready.wait(10):
            raise RuntimeError(f"{type(self).__name__} did not start")
        return self

    def stop(self) -> None:
        if self._loop is not None and self._thread is not None:
            self._loop.call_soon_threadsafe(self._stopped.set)
            self._thread.join(10)

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # --- scripting (thread-safe: everything runs on the server's loop, in call order) --------------
    def send(self, *frames: Frame) -> None:
        """Queue frames to be sent as text frames."""
        self._call(self._enqueue, [(f.encode() if isinstance(f, str) else f, True) for f in frames])

    def send_binary(self, *frames: bytes) -> None:
        self._call(self._enqueue, [(f, False) for f in frames])

    def drop_after(self, n: int) -> None:
        """Abort the connection right after the next ``n`` queued frames were written."""
        self._call(setattr, self, "_drop_after", n)

    def go_silent(self) -> None:
        """The current connection sends nothing any more; the next connection behaves normally."""
        self._call(self._silence)

    def sent_by_clients(self, connection: int | None = None) -> list[Any]:
        """Messages the clients sent (JSON-decoded when possible), optionally of one connection."""
        return [_json_or_text(m) for n, m in list(self.received) if connection in (None, n)]

    def _call(self, fn: Any, *args: Any) -> None:
        assert self._loop is not None, "start the server first"
        self._loop.call_soon_threadsafe(fn, *args)

    def _enqueue(self, frames: list[tuple[bytes, bool]]) -> None:
        self._outbox.extend(frames)
        self._wakeup.set()

    def _silence(self) -> None:
        if self._current is not None:
            self._current.silent = True

    # --- serving -------------------------------------------------------------------------------
    async def _serve(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._wakeup = asyncio.Event()
        self._stopped = asyncio.Event()
        async with serve(
            self._handle, "127.0.0.1", 0, process_request=self._check_request, ping_interval=None
        ) as server:
            self.port = server.sockets[0].getsockname()[1]
            self._ready.set()
            await self._stopped.wait()

    def _check_request(self, connection: ServerConnection, request: Request) -> Response | None:
        return None

    async def _handle(self, ws: ServerConnection) -> None:
        self.connections += 1
        conn = _Conn(self.connections, ws)
        self._current = conn
        self.paths.append(ws.request.path if ws.request else "")
        tasks = [
            asyncio.create_task(coro)
            for coro in (self._read(conn), self._write(conn), self._keepalive(conn), *self._extra_tasks(conn))
        ]
        try:
            await self._on_open(conn)
            await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            if self._current is conn:
                self._current = None
            self.close_codes.append(ws.close_code)

    async def _read(self, conn: _Conn) -> None:
        with contextlib.suppress(ConnectionClosed):
            async for message in conn.ws:
                text = message if isinstance(message, str) else message.decode("utf-8", "replace")
                self.received.append((conn.number, text))
                await self._on_message(conn, text)

    async def _write(self, conn: _Conn) -> None:
        await conn.subscribed.wait()
        await self._after_subscribe(conn)
        while True:
            while self._outbox and not conn.silent:
                payload, text = self._outbox[0]
                await conn.ws.send(payload, text=text)
                self._outbox.popleft()  # only once written: a frame is never lost between connections
                self.frames_written += 1
                if self._drop_after is not None:
                    self._drop_after -= 1
                    if self._drop_after <= 0:
                        self._drop_after = None
                        await self._abort(conn)
                        return
            self._wakeup.clear()
            await self._wakeup.wait()

    async def _abort(self, conn: _Conn) -> None:
        # Let the frames already written reach the kernel, then close TCP without a close frame.
        transport = conn.ws.transport
        while transport.get_write_buffer_size():
            await asyncio.sleep(0.001)
        transport.abort()

    async def _keepalive(self, conn: _Conn) -> None:
        if self.ping_interval_s is None:
            return await asyncio.Future()  # never: no server pings
        while True:
            await asyncio.sleep(self.ping_interval_s)
            if not conn.silent:
                pong = await conn.ws.ping()
                await asyncio.wait_for(pong, 10)
                self.pongs += 1

    # --- protocol hooks ------------------------------------------------------------------------
    async def _on_open(self, conn: _Conn) -> None:
        conn.subscribed.set()

    async def _on_message(self, conn: _Conn, text: str) -> None:
        pass

    async def _after_subscribe(self, conn: _Conn) -> None:
        pass

    def _extra_tasks(self, conn: _Conn) -> tuple[Any, ...]:
        return ()


class FakeBinanceServer(FakeExchangeServer):
    """Binance combined streams: ``/stream?streams=a@trade/b@trade`` subscribes at connect time; the
    server sends only data frames and WebSocket pings (every 20 s on the real exchange)."""

    path = "/stream"

    def __init__(self, *, ping_interval_s: float | None = 0.2) -> None:
        super().__init__(ping_interval_s=ping_interval_s)
        self.streams: list[list[str]] = []  # requested streams, per connection

    def _check_request(self, connection: ServerConnection, request: Request) -> Response | None:
        parts = urlsplit(request.path)
        streams = parse_qs(parts.query).get("streams", [""])[0]
        if parts.path != self.path or not streams:
            return connection.respond(400, "expected /stream?streams=<symbol>@trade/...\n")
        self.streams.append(streams.split("/"))
        return None


class FakeKrakenServer(FakeExchangeServer):
    """Kraken WebSocket v2: status on connect; the client subscribes to ``trade``; every symbol is
    acknowledged; then the snapshot, then updates and a heartbeat every ``heartbeat_s``; pings are
    answered with pongs."""

    path = "/v2"

    def __init__(
        self, *, heartbeat_s: float = 0.1, snapshot: list[Frame] | None = None, ping_interval_s: float | None = None
    ) -> None:
        super().__init__(ping_interval_s=ping_interval_s)
        self.heartbeat_s = heartbeat_s
        self.snapshot = [f.encode() if isinstance(f, str) else f for f in snapshot or []]
        self.subscriptions: list[list[str]] = []
        self.pings_answered = 0

    async def _on_open(self, conn: _Conn) -> None:
        await conn.ws.send(
            json.dumps(
                {
                    "channel": "status",
                    "type": "update",
                    "data": [
                        {"version": "2.0.10", "system": "online", "api_version": "v2", "connection_id": conn.number}
                    ],
                }
            )
        )

    async def _on_message(self, conn: _Conn, text: str) -> None:
        msg = _json_or_text(text)
        method = msg.get("method") if isinstance(msg, dict) else None
        params = (msg.get("params") or {}) if isinstance(msg, dict) else {}
        stamps = {"time_in": _now(), "time_out": _now()}
        if conn.silent:
            return
        if method == "subscribe" and params.get("channel") == "trade" and params.get("symbol"):
            self.subscriptions.append(list(params["symbol"]))
            for symbol in params["symbol"]:
                await conn.ws.send(
                    json.dumps(
                        {
                            "method": "subscribe",
                            "result": {"channel": "trade", "snapshot": bool(params.get("snapshot")), "symbol": symbol},
                            "success": True,
                            **stamps,
                        }
                    )
                )
            conn.subscribed.set()
        elif method == "ping":
            await conn.ws.send(json.dumps({"method": "pong", "req_id": msg.get("req_id"), **stamps}))
            self.pings_answered += 1
        else:
            await conn.ws.send(
                json.dumps({"error": "unsupported request", "method": method, "success": False, **stamps})
            )

    async def _after_subscribe(self, conn: _Conn) -> None:
        for frame in self.snapshot:
            await conn.ws.send(frame, text=True)

    def _extra_tasks(self, conn: _Conn) -> tuple[Any, ...]:
        return (self._heartbeats(conn),)

    async def _heartbeats(self, conn: _Conn) -> None:
        await conn.subscribed.wait()
        while True:
            await asyncio.sleep(self.heartbeat_s)
            if not conn.silent:
                await conn.ws.send('{"channel":"heartbeat"}')


# --- payload builders: written from the exchanges' documentation, independent of k2.exchanges -----
def binance_trade(symbol: str, trade_id: int, price: str = "65000.10", qty: str = "0.01000") -> bytes:
    """One Binance combined-stream trade message."""
    ms = time.time_ns() // 1_000_000
    return json.dumps(
        {
            "stream": f"{symbol.lower()}@trade",
            "data": {
                "e": "trade",
                "E": ms + 1,
                "s": symbol,
                "t": trade_id,
                "p": price,
                "q": qty,
                "T": ms,
                "m": trade_id % 2 == 0,
                "M": True,
            },
        },
        separators=(",", ":"),
    ).encode()


def kraken_trades(symbol: str, trade_ids: list[int], *, snapshot: bool = False) -> bytes:
    """One Kraken v2 trade message holding a batch of trades."""
    stamp = time.strftime("%Y-%m-%dT%H:%M:%S.123456Z", time.gmtime())
    data = [
        {
            "symbol": symbol,
            "side": "buy" if tid % 2 else "sell",
            "price": 65000.1,
            "qty": 0.01,
            "ord_type": "market",
            "trade_id": tid,
            "timestamp": stamp,
        }
        for tid in trade_ids
    ]
    return json.dumps(
        {"channel": "trade", "type": "snapshot" if snapshot else "update", "data": data}, separators=(",", ":")
    ).encode()


def _json_or_text(text: str) -> Any:
    try:
        return json.loads(text)
    except ValueError:
        return text


def _now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S.000000Z", time.gmtime())
