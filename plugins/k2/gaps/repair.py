"""Repair gaps: fetch the missing trades from the exchange's public REST API and publish them like
the live feed, so the next batch takes them into Silver and closes the gap.

Each fetched trade becomes the exchange's own WebSocket message (``Exchange.render_rest``), keyed by
the exchange symbol, on the exchange's topic, with the live feed's headers plus ``source: repair``:
Bronze and Silver treat it as a live trade, and Silver's key (exchange, symbol, trade id) makes a
second repair of the same ids harmless. Only ids inside the gap are published. Pages are read from
the gap's start (a trade id, or the time of the trade before it) until the exchange's ids pass the
gap's end, the exchange has nothing further, its trades pass the gap's end time, or
``K2_GAPS_REPAIR_MAX_TRADES`` were fetched; what is not fetched stays missing, reported per gap.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
from typing import Any
from urllib.parse import urlsplit

from k2.errors import K2Error
from k2.exchanges import Exchange, RestTrade, get_exchange
from k2.gaps.model import Gap
from k2.gaps.rest import RepairStopped, RestClient, Transport, urllib_transport
from k2.log import get_logger
from k2.settings import Settings

log = get_logger(__name__)

SOURCE_HEADER = ("source", b"repair")
# Kraken pages by time: start this much before the trade before the gap (trades share timestamps),
# and give up on ids once the exchange's trades are this far past the trade after it
TIME_MARGIN = timedelta(seconds=1)
END_MARGIN = timedelta(minutes=1)
Progress = Callable[[str], None]


@dataclass
class GapRepair:
    """What one gap's repair did."""

    gap: Gap
    fetched: int = 0  # distinct trades of the gap the REST API returned
    published: int = 0  # of those, acknowledged by Kafka
    pages: int = 0
    ended: str = ""  # why paging ended
    error: str | None = None

    @property
    def still_missing(self) -> int:
        return self.gap.missing_count - self.published

    @property
    def ok(self) -> bool:
        return self.error is None and self.published == self.fetched

    def to_dict(self) -> dict[str, Any]:
        g = self.gap
        return {
            "exchange": g.exchange,
            "symbol": g.symbol,
            "exchange_symbol": g.exchange_symbol,
            "first_missing_id": g.first_missing_id,
            "last_missing_id": g.last_missing_id,
            "missing": g.missing_count,
            "fetched": self.fetched,
            "published": self.published,
            "still_missing": self.still_missing,
            "pages": self.pages,
            "ended": self.ended,
            "error": self.error,
        }


@dataclass
class RepairReport:
    gaps: list[GapRepair]
    requests: int = 0
    rate_limited: int = 0  # answers that said "too many requests"
    retried: int = 0  # requests repeated after a 5xx or a network error
    waited_s: float = 0.0

    @property
    def ok(self) -> bool:
        return all(g.ok for g in self.gaps)

    @property
    def published(self) -> int:
        return sum(g.published for g in self.gaps)

    @property
    def still_missing(self) -> int:
        return sum(g.still_missing for g in self.gaps)

    def to_dict(self) -> dict[str, Any]:
        return {
            "gaps": [g.to_dict() for g in self.gaps],
            "published": self.published,
            "still_missing": self.still_missing,
            "requests": self.requests,
            "rate_limited": self.rate_limited,
            "retried": self.retried,
            "waited_s": round(self.waited_s, 3),
            "ok": self.ok,
        }


def resolve_rest_url(settings: Settings, exchange: Exchange) -> str:
    """K2_<EXCHANGE>_REST_URL, else the exchange's public endpoint; a K2Error when unusable."""
    variable = f"K2_{exchange.name.upper()}_REST_URL"
    url = settings.exchange_option(exchange.name, "REST_URL") or exchange.default_rest_url
    if not url:
        raise K2Error(f"K2 cannot repair {exchange.name} gaps: it knows no REST history for it", "")
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname or parts.query or parts.fragment:
        raise K2Error(
            f"{variable}={url!r} is not an http(s) base URL",
            f"use the exchange's REST base, e.g. {exchange.default_rest_url}, or unset {variable} for it.",
        )
    return url


def repair_gaps(
    settings: Settings,
    gaps: list[Gap],
    *,
    stop: threading.Event | None = None,
    progress: Progress | None = None,
    transport: Transport = urllib_transport,
    request_interval_s: float | None = None,
) -> RepairReport:
    """Repair ``gaps`` (any exchanges, any order), one exchange after another; returns what each
    gap's repair did. A gap that fails (a refused request, an exhausted waiting budget, an
    unreadable answer) records its error and the others go on; ``stop`` ends the run between pages.
    ``request_interval_s`` overrides the exchanges' pacing (tests)."""
    stop = stop or threading.Event()
    say = progress or (lambda line: None)
    report = RepairReport([])
    by_exchange: dict[str, list[Gap]] = {}
    for gap in gaps:
        by_exchange.setdefault(gap.exchange, []).append(gap)
    for name, group in by_exchange.items():
        exchange = get_exchange(name)
        base_url = resolve_rest_url(settings, exchange)
        interval = exchange.rest_request_interval_s if request_interval_s is None else request_interval_s
        client = RestClient(name, settings.gaps_repair, interval_s=interval, stop=stop, transport=transport)
        results = _repair_exchange(settings, exchange, base_url, group, client, stop, say)
        report.gaps.extend(results)
        report.requests += client.requests
        report.rate_limited += client.rate_limited
        report.retried += client.retried
        report.waited_s += client.waited_s
    return report


def _repair_exchange(
    settings: Settings,
    exchange: Exchange,
    base_url: str,
    gaps: list[Gap],
    client: RestClient,
    stop: threading.Event,
    say: Progress,
) -> list[GapRepair]:
    from k2.feeds.producer import TradeProducer

    producer = TradeProducer(settings, exchange, extra_headers=(SOURCE_HEADER,))
    results = [GapRepair(gap) for gap in gaps]
    try:
        producer.check_ready()
        for result in results:
            if stop.is_set():
                result.ended = "stopped before it began"
                continue
            say(f"{result.gap.label}: {result.gap.missing_count} missing, fetching from {base_url}")
            try:
                _check(exchange, result.gap)
                _repair_gap(exchange, base_url, result, client, producer, settings.gaps_repair.max_trades, say)
            except RepairStopped:
                result.ended = "stopped"
            except K2Error as exc:
                result.error = f"{exc.cause} (fix: {exc.fix})" if exc.fix else exc.cause
                log.error("gaps.repair_failed", gap=result.gap.label, error=result.error)
                say(f"{result.gap.label}: failed: {result.error}")
    finally:
        stats = producer.close()  # every delivery report arrives before the counts are read
    if stats.failed:
        for result in results:
            if result.published < result.fetched and result.error is None:
                result.error = (
                    f"{result.fetched - result.published} trades were not delivered to Kafka ({stats.errors})"
                )
    for result in results:
        log.info("gaps.repaired", gap=result.gap.label, **{k: v for k, v in result.to_dict().items() if k != "error"})
    return results


def _check(exchange: Exchange, gap: Gap) -> None:
    exchange.split_symbol(gap.exchange_symbol)  # a K2Error naming the exchange's spelling
    if gap.first_missing_id > gap.last_missing_id or gap.first_missing_id < 0:
        raise K2Error(
            f"{gap.label} is no range of ids", "give the first and the last missing id, first <= last, both >= 0."
        )


def _repair_gap(
    exchange: Exchange,
    base_url: str,
    result: GapRepair,
    client: RestClient,
    producer: Any,
    max_trades: int,
    say: Progress,
) -> None:
    gap = result.gap
    key = gap.exchange_symbol.encode()
    seen: set[int] = set()

    def delivered(err: Any, msg: Any) -> None:
        producer.count_delivery(err, msg)
        if err is None:
            result.published += 1

    after_ns = int((gap.after_time - TIME_MARGIN).timestamp()) * 1_000_000_000
    end_us = int((gap.before_time + END_MARGIN).timestamp() * 1_000_000)
    cursor = exchange.rest_start(gap.first_missing_id, after_ns)
    while True:
        if client.stop.is_set():
            raise RepairStopped()
        page = client.get(
            exchange.rest_request(base_url, gap.exchange_symbol, cursor, gap.last_missing_id), exchange.rest_page
        )
        result.pages += 1
        wanted = [t for t in page.trades if _inside(gap, t) and t.trade_id not in seen]
        room = max_trades - len(seen)
        for trade in wanted[:room]:
            seen.add(trade.trade_id)
            producer.publish(exchange.render_rest(gap.exchange_symbol, trade), key, on_delivery=delivered)
        producer.poll(0)
        result.fetched = len(seen)
        top = max((t.trade_id for t in page.trades), default=None)
        say(
            f"{gap.label}: page {result.pages} at {cursor}: {len(page.trades)} trades, {len(wanted)} new in the gap, "
            f"{result.fetched}/{gap.missing_count} so far"
        )
        if top is None:
            result.ended = "the exchange has no trades further"
            return
        if len(seen) >= max_trades and len(seen) < gap.missing_count:
            result.ended = f"fetched K2_GAPS_REPAIR_MAX_TRADES={max_trades}; the rest waits for the next repair"
            return
        if top >= gap.last_missing_id or len(seen) == gap.missing_count:
            result.ended = "reached the gap's end"
            return
        if min(t.event_time_us for t in page.trades) > end_us:
            result.ended = "the exchange's trades passed the gap's end time without its ids"
            return
        if page.cursor is None or page.cursor <= cursor:
            raise K2Error(
                f"the {exchange.name} REST API made no progress on {gap.label}: the page at {cursor} points next "
                f"at {page.cursor} (its trade ids {page.trades[0].trade_id}-{top})",
                "the exchange's history does not page forward from here; repair this range again later, or "
                "check K2_" + exchange.name.upper() + "_REST_URL.",
            )
        cursor = page.cursor


def _inside(gap: Gap, trade: RestTrade) -> bool:
    return gap.first_missing_id <= trade.trade_id <= gap.last_missing_id
