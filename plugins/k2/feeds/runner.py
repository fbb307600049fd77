"""Runs a simulated feed into Kafka at an exact rate, with progress, a summary and a fault manifest."""

from __future__ import annotations

import hashlib
import json
import signal
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from k2.exchanges import Exchange
from k2.feeds.producer import DeliveryStats, TradeProducer
from k2.feeds.simulator import Fault, FaultPlan, MessageBatch, TradeSimulator
from k2.log import get_logger

log = get_logger(__name__)

PACING_SLICE_S = 0.002  # pacing granularity: the schedule is re-checked this often


@dataclass
class FeedSummary:
    exchange: str
    mode: str
    messages: int
    trades: int
    elapsed_s: float
    rate: float  # achieved messages per second
    delivery: DeliveryStats
    faults: dict[str, int] = field(default_factory=dict)
    manifest: str | None = None

    @property
    def ok(self) -> bool:
        return self.delivery.failed == 0 and self.delivery.in_flight == 0


class _Manifest:
    """Every injected fault with the Kafka coordinates it was delivered to."""

    def __init__(self, producer: TradeProducer) -> None:
        self.entries: list[dict[str, Any]] = []
        self.producer = producer

    def track(self, index: int, fault: Fault, payload: bytes, key: bytes) -> Callable[[Any, Any], None]:
        entry = {
            "index": index,
            "fault": fault.kind,
            "detail": fault.detail,
            "key": key.decode(),
            "trade_ids": list(fault.trade_ids),
            "payload_sha256": hashlib.sha256(payload).hexdigest(),
            "partition": None,
            "offset": None,
            "delivered": None,
        }
        self.entries.append(entry)

        def on_delivery(err, kafka_msg) -> None:
            entry["delivered"] = err is None
            if err is None:
                entry["partition"], entry["offset"] = kafka_msg.partition(), kafka_msg.offset()
            self.producer.count_delivery(err, kafka_msg)

        return on_delivery

    def write(self, path: Path, header: dict[str, Any]) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        counts: dict[str, int] = {}
        for e in self.entries:
            counts[e["fault"]] = counts.get(e["fault"], 0) + 1
        path.write_text(json.dumps({**header, "fault_counts": counts, "entries": self.entries}, indent=1))


def run_simulated_feed(
    producer: TradeProducer,
    exchange: Exchange,
    symbols: list[str],
    *,
    rate: float,
    duration_s: float | None = None,
    count: int | None = None,
    seed: int = 42,
    faults: FaultPlan | None = None,
    manifest_path: Path | None = None,
    start_us: int | None = None,
    progress_every_s: float = 2.0,
    stop: threading.Event | None = None,
) -> FeedSummary:
    """Publish simulated messages at ``rate`` msg/s (0 = as fast as possible) until ``count``
    messages or ``duration_s`` seconds, or until ``stop`` is set (SIGINT/SIGTERM set it)."""
    faults = faults or FaultPlan()
    start_us = time.time_ns() // 1000 if start_us is None else start_us
    sim = TradeSimulator(exchange, symbols, seed=seed, rate=rate, start_us=start_us, faults=faults)
    manifest = _Manifest(producer) if manifest_path else None
    stop = stop or threading.Event()
    limit = count if count is not None else float("inf")
    deadline_s = duration_s if duration_s is not None else float("inf")
    if rate > 0 and duration_s is not None:
        # a paced run sends exactly rate x duration messages; the clock only bounds unpaced runs
        limit, deadline_s = min(limit, round(rate * duration_s)), float("inf")
    started = time.monotonic()
    deadline = started + deadline_s
    next_progress = started + progress_every_s
    sent = trades = 0
    fault_counts: dict[str, int] = {}
    log.info(
        "feed.started",
        exchange=exchange.name,
        mode="sim",
        rate=rate or "max",
        symbols=symbols,
        seed=seed,
        duration_s=duration_s,
        count=count,
        topic=producer.topic,
    )
    with _stop_on_signals(stop):
        for batch in sim.batches():
            pos = 0
            size = len(batch.payloads)
            while pos < size and sent < limit and not stop.is_set():
                now = time.monotonic()
                if now >= deadline:
                    break
                # what the schedule wants out by now (everything if unthrottled), within this batch
                due = limit if rate <= 0 else int((now - started) * rate) + 1
                end = int(min(size, pos + max(0, due - sent), pos + (limit - sent)))
                if end > pos:
                    _publish(producer, batch, pos, end, sent, manifest)
                    sent += end - pos
                    pos = end
                producer.poll(0)
                if now >= next_progress:
                    _progress(exchange.name, producer, sent, started)
                    next_progress = now + progress_every_s
                if rate > 0 and pos < size:
                    time.sleep(min(PACING_SLICE_S, max(0.0, started + sent / rate - time.monotonic())))
            trades += sum(batch.trade_counts[:pos])
            for index in batch.faults:
                if index < pos:
                    kind = batch.faults[index].kind
                    fault_counts[kind] = fault_counts.get(kind, 0) + 1
            if pos < size or sent >= limit or stop.is_set() or time.monotonic() >= deadline:
                break
    elapsed = time.monotonic() - started
    stats = producer.close()
    summary = FeedSummary(
        exchange.name,
        "sim",
        sent,
        trades,
        round(elapsed, 3),
        round(sent / elapsed, 1) if elapsed else 0.0,
        stats,
        fault_counts,
    )
    if manifest is not None and manifest_path is not None:
        manifest.write(
            manifest_path,
            {
                "exchange": exchange.name,
                "topic": producer.topic,
                "seed": seed,
                "rate": rate,
                "start_us": start_us,
                "messages": sent,
                "symbols": symbols,
            },
        )
        summary.manifest = str(manifest_path)
    log.info(
        "feed.finished",
        exchange=exchange.name,
        messages=sent,
        trades=trades,
        rate=summary.rate,
        delivered=stats.delivered,
        failed=stats.failed,
        faults=fault_counts,
    )
    return summary


def _publish(
    producer: TradeProducer, batch: MessageBatch, start: int, end: int, sent_before: int, manifest: _Manifest | None
) -> None:
    """Publish batch[start:end]; fault messages go one by one so the manifest learns their offsets."""
    faults = [i for i in batch.faults if start <= i < end] if manifest else []
    if not faults:
        producer.publish_batch(batch.payloads[start:end], batch.keys[start:end])
        return
    cursor = start
    for i in faults:
        if cursor < i:
            producer.publish_batch(batch.payloads[cursor:i], batch.keys[cursor:i])
        callback = manifest.track(sent_before + i - start, batch.faults[i], batch.payloads[i], batch.keys[i])
        producer.publish(batch.payloads[i], batch.keys[i], callback)
        cursor = i + 1
    if cursor < end:
        producer.publish_batch(batch.payloads[cursor:end], batch.keys[cursor:end])


def _progress(exchange: str, producer: TradeProducer, sent: int, started: float) -> None:
    elapsed = time.monotonic() - started
    s = producer.stats
    log.info(
        "feed.progress",
        exchange=exchange,
        sent=sent,
        rate=round(sent / elapsed) if elapsed else 0,
        delivered=s.delivered,
        errors=s.failed,
        queued=producer.queue_length(),
        backpressure_waits=s.backpressure_waits,
    )


class _stop_on_signals:
    """SIGINT/SIGTERM set the stop event (main thread only), so the feed flushes before exiting."""

    def __init__(self, stop: threading.Event) -> None:
        self.stop = stop
        self.previous: dict[int, Any] = {}

    def __enter__(self) -> None:
        if threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGINT, signal.SIGTERM):
                self.previous[sig] = signal.signal(sig, lambda *_: self.stop.set())

    def __exit__(self, *exc: object) -> None:
        for sig, handler in self.previous.items():
            signal.signal(sig, handler)
