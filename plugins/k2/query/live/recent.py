"""The query server's recent trades in the answer's own form (``TRADES_SCHEMA``), per symbol, kept
from each judging round's valid candidates as they are stored. A query for the last minutes takes
whole rounds and cuts the ones at its edges, instead of reading its rows back from the store and
converting them: for 240,000 trades, about 2 ms against 22 ms idle, and the store's read was 50-250 ms
on the loaded cores of ``benchmarks/query.py``, the largest step of a served trades query.

Exact or nothing: a window that reaches rows already let go, or holds a copy that may not be its
trade's only one (``LiveStore``'s contested), is answered from the store instead."""

from __future__ import annotations

import datetime as dt
import threading
from collections import deque
from dataclasses import dataclass

import pyarrow as pa
import pyarrow.compute as pc

from k2.query.hybrid import TIME, TRADES_SCHEMA
from k2.query.live import Offsets

# the columns with one value in a round of one symbol
SHARED = ("exchange", "symbol", "kafka_topic", "bronze_ingested_at")
# a symbol's small rounds are merged into one chunk by this many, or once they hold this many trades:
# an answer of a few hundred chunks took its Arrow stream 26 ms to write and its client 8 ms to map
# idle (245,000 trades in 601 chunks), against 11 ms and 0.03 ms in one chunk. A round of this many
# trades (a catching-up poll's) stays alone: a query's window cuts the chunks at its edges, which
# copies their rows, so no chunk holds much more
MERGE_EVERY = 16
MERGE_ROWS = 16_384


@dataclass(frozen=True)
class _Round:
    """One round's trades of one symbol, with what choosing them needs without reading them."""

    trades: pa.Table  # TRADES_SCHEMA
    first_event: dt.datetime
    last_event: dt.datetime
    newest_stamp: dt.datetime  # the latest Kafka timestamp: when the round may be let go
    contested: bool
    offsets: dict[int, tuple[int, int]]  # partition -> the round's lowest and highest offset (all symbols')
    rounds: int = 1  # how many judging rounds it holds (merged, ``MERGE_EVERY``)


class RecentTrades:
    """One exchange's trades of the last ``keep_s`` seconds of Kafka time. Thread-safe: one thread adds
    (the exchange's follower), any number read."""

    def __init__(self, keep_s: float) -> None:
        self._keep = dt.timedelta(seconds=keep_s)
        self._rounds: dict[str, deque[_Round]] = {}  # K2's symbol -> its rounds, oldest first
        self._let_go_until: dt.datetime | None = None  # the latest event time among rounds let go
        self._newest_stamp: dt.datetime | None = None
        self._repeats: dict[object, pa.Array] = {}  # a SHARED column's value -> that value many times
        self._merge_every, self._merge_rows = MERGE_EVERY, MERGE_ROWS
        self._lock = threading.Lock()

    @property
    def keeping(self) -> bool:
        """Whether it keeps any (``keep_s`` above 0)."""
        return bool(self._keep)

    def add(self, trades: pa.Table, contested: pa.ChunkedArray) -> None:
        """Keeps a round's valid candidates (``trades`` in TRADES_SCHEMA, ``contested`` beside each) and
        lets go of the rounds older than ``keep_s`` behind the newest Kafka timestamp."""
        if not trades.num_rows or not self._keep:
            return
        # grouped by symbol, each in its stored order (a stable sort): one slice per symbol
        trades = trades.append_column("_contested", contested)
        trades = trades.take(pc.sort_indices(trades, sort_keys=[("symbol", "ascending")]))
        offsets = _offsets(trades)
        counts = {c["values"]: c["counts"] for c in pc.value_counts(trades.column("symbol")).to_pylist()}
        rounds, at = [], 0
        for symbol in sorted(counts):  # as the sort ordered them (UTF-8 sorts as code points)
            rounds.append(self._round_of(trades.slice(at, counts[symbol]), offsets))
            at += counts[symbol]
        with self._lock:
            for symbol, one in rounds:
                self._rounds.setdefault(symbol, deque()).append(one)
                if self._newest_stamp is None or one.newest_stamp > self._newest_stamp:
                    self._newest_stamp = one.newest_stamp
            self._let_go(self._newest_stamp - self._keep)
        for symbol, _ in rounds:
            self._merge(symbol)

    def _merge(self, symbol: str) -> None:
        """Merges the symbol's last small rounds into one chunk (``_mergeable``). Made outside the lock,
        which readers take: only this thread (the follower's) changes the rounds."""
        with self._lock:
            run = self._mergeable(self._rounds[symbol])
        if not run:
            return
        merged = _merged(run, self._shared(pa.concat_tables([r.trades for r in run]).combine_chunks()))
        with self._lock:  # the run is the last rounds still: only this thread adds or lets go
            rounds = self._rounds[symbol]
            for _ in run:
                rounds.pop()
            rounds.append(merged)

    def _mergeable(self, rounds: deque[_Round]) -> list[_Round]:
        """The last rounds, oldest first, once ``MERGE_EVERY`` of them or ``MERGE_ROWS`` trades are single,
        small and uncontested; else none. A contested round stays alone (it sends only the windows that
        hold it to the store), and so does a large one."""
        run, held = [], 0
        for one in reversed(rounds):
            if one.rounds > 1 or one.contested or one.trades.num_rows >= self._merge_rows:
                break
            run.append(one)
            held += one.trades.num_rows
            if len(run) == self._merge_every or held >= self._merge_rows:
                return run[::-1] if len(run) > 1 else []
        return []

    def _round_of(self, trades: pa.Table, offsets: dict[int, tuple[int, int]]) -> tuple[str, _Round]:
        """One symbol's rows of a round (TRADES_SCHEMA and _contested) as a ``_Round``; ``offsets``, the
        whole round's, bound the symbol's."""
        events = pc.min_max(trades.column("event_time"))
        stamp = pc.max(trades.column("kafka_timestamp")).as_py()
        contested = bool(pc.any(trades.column("_contested")).as_py())
        kept = self._shared(trades.drop_columns(["_contested"]))
        one = _Round(kept, events["min"].as_py(), events["max"].as_py(), stamp, contested, offsets)
        return kept.column("symbol")[0].as_py(), one

    def _shared(self, trades: pa.Table) -> pa.Table:
        """``trades`` (of one symbol) with each SHARED column a slice of an array every round shares."""
        for name in SHARED:
            column = trades.column(name)
            shared = self._repeated(column[0], len(column))
            trades = trades.set_column(trades.schema.get_field_index(name), name, shared)
        return trades

    def _repeated(self, value: pa.Scalar, length: int) -> pa.Array:
        """``value`` ``length`` times, sliced from one array per value: a round's exchange, topic and symbol
        take no memory of their own (a million kept trades took 240 MB with them, 163 MB without)."""
        key = (value.type, value.as_py())
        held = self._repeats.get(key)
        if held is None or len(held) < length:
            held = self._repeats[key] = pa.repeat(value, max(length, 2 * len(held or ())))
        return held.slice(0, length)

    def _let_go(self, before: dt.datetime) -> None:
        for rounds in self._rounds.values():
            while rounds and rounds[0].newest_stamp < before:
                gone = rounds.popleft()
                if self._let_go_until is None or gone.last_event > self._let_go_until:
                    self._let_go_until = gone.last_event

    def trades(self, start: dt.datetime, end: dt.datetime, symbols: set[str], from_offsets: Offsets) -> pa.Table | None:
        """The trades of ``symbols`` (K2's spelling) with an event time in [start, end), of records at or
        after ``from_offsets``, in the order they were stored; None when that cannot be answered
        exactly from what is kept."""
        with self._lock:
            if not self._keep or (self._let_go_until is not None and self._let_go_until >= start):
                return None
            chosen = [r for s in sorted(symbols) for r in self._rounds.get(s, ()) if r.last_event >= start]
        parts = []
        for one in chosen:
            if one.first_event >= end or _all_below(one, from_offsets):
                continue
            if one.contested:
                return None
            trades = one.trades
            if one.first_event < start or one.last_event >= end:
                trades = trades.filter(_inside(trades, start, end))
            if not _all_at_or_above(one, from_offsets):
                trades = trades.filter(_at_or_above(trades, from_offsets))
            parts.append(trades)
        return pa.concat_tables(parts) if parts else TRADES_SCHEMA.empty_table()


def _merged(run: list[_Round], trades: pa.Table) -> _Round:
    """The rounds of ``run`` (one symbol's, in order) as one, holding ``trades``, their rows."""
    offsets: dict[int, tuple[int, int]] = {}
    for one in run:
        for partition, (low, high) in one.offsets.items():
            known = offsets.get(partition, (low, high))
            offsets[partition] = (min(known[0], low), max(known[1], high))
    first, last = min(r.first_event for r in run), max(r.last_event for r in run)
    return _Round(trades, first, last, max(r.newest_stamp for r in run), False, offsets, len(run))


def _offsets(trades: pa.Table) -> dict[int, tuple[int, int]]:
    """Per partition, the lowest and highest offset among ``trades``."""
    by_partition = trades.group_by("kafka_partition").aggregate([("kafka_offset", "min"), ("kafka_offset", "max")])
    lowest, highest = (by_partition.column(f"kafka_offset_{f}").to_pylist() for f in ("min", "max"))
    partitions = by_partition.column("kafka_partition").to_pylist()
    return {p: (low, high) for p, low, high in zip(partitions, lowest, highest, strict=True)}


def _inside(trades: pa.Table, start: dt.datetime, end: dt.datetime) -> pa.ChunkedArray:
    events = trades.column("event_time")
    return pc.and_(pc.greater_equal(events, pa.scalar(start, TIME)), pc.less(events, pa.scalar(end, TIME)))


def _all_below(one: _Round, from_offsets: Offsets) -> bool:
    return all(high < from_offsets.get(p, 0) for p, (_, high) in one.offsets.items())


def _all_at_or_above(one: _Round, from_offsets: Offsets) -> bool:
    return all(low >= from_offsets.get(p, 0) for p, (low, _) in one.offsets.items())


def _at_or_above(trades: pa.Table, from_offsets: Offsets) -> pa.ChunkedArray:
    """Per row: its offset is at or after ``from_offsets``' for its partition (0 for one not named)."""
    partitions = trades.column("kafka_partition")
    named = pc.unique(partitions)
    firsts = pa.array([from_offsets.get(p, 0) for p in named.to_pylist()], pa.int64())
    return pc.greater_equal(trades.column("kafka_offset"), pc.take(firsts, pc.index_in(partitions, named)))
