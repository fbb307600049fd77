"""Live mode: one WebSocket connection per exchange, every data frame published to Kafka unchanged.

The exchange module says what a frame is; this module keeps the link alive and decides what goes to
Kafka. Trade frames and anything unrecognised are published byte-for-byte (Bronze must see what the
exchange really sent); heartbeats, acks and errors are counted and logged. A connection is replaced
when it closes, when nothing arrived for the exchange's idle timeout, or when it reaches the
exchange's maximum age. Replacements back off exponentially with full jitter, so many feeds do not
hammer a recovering exchange in lockstep.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import random
import signal
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidHandshake, InvalidURI
from websockets.uri import parse_uri

from k2.errors import K2Error
from k2.exchanges import Exchange, FrameKind, resolve_symbols
from k2.feeds.events import CONNECTED, DISCONNECTED, ConnectionEvent
from k2.feeds.producer import DeliveryStats, TradeProducer
from k2.log import get_logger
from k2.settings import Settings

log = get_logger(__name__)

WATCH_EVERY_S = 0.1  # how quickly a stop request is noticed and delivery callbacks are served
PROGRESS_EVERY_S = 30.0
LOG_CONTENT_CHARS = 300
_LOG_EVERY_FRAME_UNTIL = 20  # then only every 1000th of a kind, so a format change cannot flood logs


class Backoff:
    """Exponential backoff with full jitter: attempt n waits uniform(0, min(cap, base * 2**n))."""

    def __init__(self, base_s: float = 0.5, cap_s: float = 30.0, rng: random.Random | None = None) -> None:
        self.base_s, self.cap_s = base_s, cap_s
        self.attempt = 0
        self._rng = rng or random.Random()

    def ceiling(self) -> float:
        return min(self.cap_s, self.base_s * 2 ** min(self.attempt, 32))  # exponent bounded: no overflow

    def next_delay(self) -> float:
        delay = self._rng.uniform(0.0, self.ceiling())
        self.attempt += 1
        return delay

    def reset(self) -> None:
        self.attempt = 0


@dataclass(frozen=True)
class FrameAction:
    kind: FrameKind
    publish: bool
    key: bytes


def plan_frame(exchange: Exchange, frame: str | bytes) -> FrameAction:
    """What to do with a received frame: trades and unrecognised frames go to Kafka, the rest not."""
    try:
        classified = exchange.classify(frame)
    except Exception:  # classify must never raise; if it does, keep the frame rather than the crash
        log.exception("feed.classify_failed", exchange=exchange.name)
        return FrameAction(FrameKind.UNKNOWN, True, b"")
    publish = classified.kind in (FrameKind.TRADES, FrameKind.UNKNOWN)
    return FrameAction(classified.kind, publish, classified.key.encode())


def resolve_url(settings: Settings, exchange: Exchange, symbols: list[str], url: str | None = None) -> str:
    """The URL to open; a K2Error (not endless retries) when it can never work."""
    base = url or settings.exchange_option(exchange.name, "WS_URL") or exchange.default_ws_url
    full = exchange.connect_url(base, symbols)
    try:
        parse_uri(full)
    except (InvalidURI, ValueError) as exc:
        raise K2Error(
            f"{base!r} is not a usable WebSocket URL for {exchange.name}: {exc}",
            f"pass a ws:// or wss:// URL with a host (or set K2_{exchange.name.upper()}_WS_URL), "
            f"e.g. {exchange.default_ws_url}; unset it for the default.",
        ) from None
    return full


@dataclass
class LiveFeedSummary:
    exchange: str
    url: str
    frames: dict[str, int]  # received frames by FrameKind value
    published: int
    publish_failed: int  # frames the producer refused outright (never queued)
    connections: int  # connections opened
    retry_reasons: dict[str, int]  # why each connection (or attempt) ended
    elapsed_s: float
    delivery: DeliveryStats
    events: int = 0  # connection events published (k2.feeds.events); delivery counts them too

    @property
    def reconnects(self) -> int:
        return max(0, self.connections - 1)

    @property
    def ok(self) -> bool:
        return self.publish_failed == 0 and self.delivery.failed == 0 and self.delivery.in_flight == 0


class LiveFeed:
    """Streams one exchange's trade feed into its Kafka topic until ``stop_event`` is set.

    ``idle_timeout_s``, ``ping_interval_s`` and ``max_connection_age_s`` default to the exchange's
    values (tests shorten them). The stop event may be set from any thread.
    """

    def __init__(
        self,
        settings: Settings,
        exchange: Exchange,
        symbols: list[str] | None,
        producer: TradeProducer,
        *,
        url: str | None = None,
        stop_event: threading.Event | None = None,
        idle_timeout_s: float | None = None,
        ping_interval_s: float | None = None,
        max_connection_age_s: float | None = None,
        backoff: Backoff | None = None,
        open_timeout_s: float = 10.0,
        close_timeout_s: float = 2.0,
    ) -> None:
        from confluent_kafka import KafkaException  # lazy like the producer: CLI start-up stays fast

        self._kafka_exception = KafkaException
        self.exchange = exchange
        self.symbols = resolve_symbols(settings, exchange, symbols)
        self.url = resolve_url(settings, exchange, self.symbols, url)
        self.producer = producer
        self.stop_event = stop_event or threading.Event()
        self.idle_timeout_s = idle_timeout_s or exchange.idle_timeout_s
        self.ping_interval_s = ping_interval_s or exchange.ping_interval_s
        self.max_connection_age_s = max_connection_age_s or exchange.max_connection_age_s
        self.backoff = backoff or Backoff()
        self.open_timeout_s, self.close_timeout_s = open_timeout_s, close_timeout_s
        # Counters are read by other threads (progress, tests); plain ints and dicts are safe to read.
        self.frames: dict[FrameKind, int] = dict.fromkeys(FrameKind, 0)
        self.published = 0
        self.publish_failed = 0  # rejected by the producer before reaching the queue
        self.connections = 0
        self.retry_reasons: dict[str, int] = {}
        self.events_published = 0
        self._ping_id = 0

    def frame_counts(self) -> dict[str, int]:
        return {kind.value: n for kind, n in self.frames.items()}

    def stop(self) -> None:
        """Ask the feed to finish; safe from any thread and from signal handlers."""
        self.stop_event.set()

    async def run(self) -> LiveFeedSummary:
        started = time.monotonic()
        log.info(
            "feed.started",
            exchange=self.exchange.name,
            mode="live",
            url=self.url,
            symbols=self.symbols,
            topic=self.producer.topic,
        )
        session = asyncio.create_task(self._connect_forever())
        watcher = asyncio.create_task(self._watch(session))
        try:
            # the session ends only when the watcher cancels it on stop, or on a bug
            await asyncio.wait({session, watcher}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            watcher.cancel()
            session.cancel()
            await asyncio.gather(watcher, session, return_exceptions=True)  # lets the socket close
            stats = self.producer.close()
        for task in (session, watcher):
            if not task.cancelled():
                task.result()  # re-raise a crash (a stop ends the session by cancellation)
        summary = LiveFeedSummary(
            self.exchange.name,
            self.url,
            self.frame_counts(),
            self.published,
            self.publish_failed,
            self.connections,
            dict(self.retry_reasons),
            round(time.monotonic() - started, 3),
            stats,
            self.events_published,
        )
        log.info(
            "feed.finished",
            exchange=self.exchange.name,
            published=self.published,
            events=self.events_published,
            publish_failed=self.publish_failed,
            connections=self.connections,
            retry_reasons=self.retry_reasons,
            delivered=stats.delivered,
            failed=stats.failed,
            frames=summary.frames,
        )
        return summary

    async def _watch(self, session: asyncio.Task[None]) -> None:
        """Serve delivery callbacks while the socket is quiet, report progress, turn a stop into a
        cancellation (which closes the socket cleanly wherever the session is waiting)."""
        next_progress = time.monotonic() + PROGRESS_EVERY_S
        while not self.stop_event.is_set():
            self.producer.poll(0)
            if time.monotonic() >= next_progress:
                next_progress += PROGRESS_EVERY_S
                s = self.producer.stats
                log.info(
                    "feed.progress",
                    exchange=self.exchange.name,
                    published=self.published,
                    delivered=s.delivered,
                    failed=s.failed,
                    connections=self.connections,
                    frames=self.frame_counts(),
                )
            await asyncio.sleep(WATCH_EVERY_S)
        log.info("feed.stopping", exchange=self.exchange.name)
        session.cancel()

    async def _connect_forever(self) -> None:
        while True:
            reason, detail = await self._session()
            self.retry_reasons[reason] = self.retry_reasons.get(reason, 0) + 1
            # a planned replacement at max age is not a failure: reconnect at once
            delay = 0.0 if reason == "max_connection_age" else self.backoff.next_delay()
            log.warning(
                "feed.reconnecting",
                exchange=self.exchange.name,
                reason=reason,
                detail=detail,
                attempt=self.backoff.attempt,
                delay_s=round(delay, 3),
                connections=self.connections,
            )
            await asyncio.sleep(delay)

    async def _session(self) -> tuple[str, str]:
        """One connection from open to end; returns (reason, detail) for why it ended."""
        opened = False
        try:
            async with connect(self.url, open_timeout=self.open_timeout_s, close_timeout=self.close_timeout_s) as ws:
                opened = True
                self.connections += 1
                log.info("feed.connected", exchange=self.exchange.name, url=self.url, connection=self.connections)
                self._event(CONNECTED)
                try:
                    for frame in self.exchange.subscribe_frames(self.symbols):
                        await ws.send(frame)
                    ended = await self._receive(ws)
                except asyncio.CancelledError:  # stopping: say goodbye (else the library closes with 1011)
                    self._event(DISCONNECTED, "stopped", "the feed was asked to stop")
                    await ws.close(1001, "client shutting down")
                    raise
        except ConnectionClosed as exc:
            ended = "connection_closed", f"code={exc.rcvd.code if exc.rcvd else 1006} {exc}"
        except (OSError, InvalidHandshake, TimeoutError) as exc:
            ended = ("connection_error" if opened else "connect_failed"), f"{type(exc).__name__}: {exc}"
        if opened:  # a failed attempt changes nothing: the feed was not listening before it either
            self._event(DISCONNECTED, *ended)
        return ended

    def _event(self, event: str, reason: str = "", detail: str = "") -> None:
        """Publish a connection event (k2.feeds.events); a failure is logged, never fatal."""
        at = dt.datetime.now(dt.UTC)
        try:
            self.producer.publish_event(ConnectionEvent(event, at, self.connections, reason, detail, self.url))
        except self._kafka_exception as exc:
            self.publish_failed += 1
            log.error("feed.event_publish_failed", exchange=self.exchange.name, event=event, error=str(exc))
            return
        self.events_published += 1

    async def _receive(self, ws: ClientConnection) -> tuple[str, str]:
        loop = asyncio.get_running_loop()
        now = loop.time()
        last_frame = now
        age_limit = now + self.max_connection_age_s if self.max_connection_age_s else float("inf")
        next_ping = now + self.ping_interval_s if self.ping_interval_s else float("inf")
        healthy = False
        while True:
            now = loop.time()
            if now >= age_limit:
                return "max_connection_age", f"open for {self.max_connection_age_s}s"
            if now >= next_ping:
                next_ping = now + (self.ping_interval_s or 0.0)
                self._ping_id += 1
                ping = self.exchange.ping_frame(self._ping_id)
                if ping is not None:
                    await ws.send(ping)
            idle_deadline = last_frame + self.idle_timeout_s
            try:
                async with asyncio.timeout_at(min(idle_deadline, age_limit, next_ping)):
                    raw = await ws.recv(decode=False)  # bytes as received: published byte-for-byte
            except TimeoutError:
                if loop.time() >= idle_deadline:
                    return "idle_timeout", f"no frame for {self.idle_timeout_s}s"
                continue
            last_frame = loop.time()
            kind = self._handle(raw)
            if not healthy and kind in (FrameKind.TRADES, FrameKind.HEARTBEAT):
                healthy = True
                self.backoff.reset()  # this connection works: the next failure starts from the base

    def _handle(self, raw: str | bytes) -> FrameKind:
        payload = raw.encode() if isinstance(raw, str) else raw
        action = plan_frame(self.exchange, payload)
        self.frames[action.kind] += 1
        count = self.frames[action.kind]
        if action.publish:
            self._publish(payload, action.key)
        if action.kind in (FrameKind.TRADES, FrameKind.HEARTBEAT):
            return action.kind
        if count <= _LOG_EVERY_FRAME_UNTIL or count % 1000 == 0:
            level = {FrameKind.ERROR: log.error, FrameKind.UNKNOWN: log.warning}.get(action.kind, log.info)
            level(
                f"feed.{action.kind.value}_frame",
                exchange=self.exchange.name,
                count=count,
                published=action.publish,
                size=len(payload),
                content=_preview(payload),
            )
        return action.kind

    def _publish(self, payload: bytes, key: bytes) -> None:
        try:
            self.producer.publish(payload, key)
        except self._kafka_exception as exc:  # e.g. a frame over message.max.bytes: skip it, loudly
            self.publish_failed += 1
            log.error(
                "feed.publish_failed",
                exchange=self.exchange.name,
                error=str(exc),
                size=len(payload),
                failed=self.publish_failed,
                content=_preview(payload),
            )
            return
        self.published += 1
        self.producer.poll(0)


def _preview(payload: bytes) -> str:
    return payload[:LOG_CONTENT_CHARS].decode("utf-8", "replace")


def run_live_feed(
    settings: Settings,
    exchange: Exchange,
    symbols: list[str] | None,
    producer: TradeProducer,
    *,
    url: str | None = None,
    stop_event: threading.Event | None = None,
    **options: Any,
) -> LiveFeedSummary:
    """Run a :class:`LiveFeed` to completion; SIGINT/SIGTERM stop it gracefully (main thread only)."""
    feed = LiveFeed(settings, exchange, symbols, producer, url=url, stop_event=stop_event, **options)
    with _stop_on_signals(feed.stop_event):
        return asyncio.run(feed.run())


@contextmanager
def _stop_on_signals(stop: threading.Event) -> Iterator[None]:
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = {sig: signal.signal(sig, lambda *_: stop.set()) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
