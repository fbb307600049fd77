"""Deterministic trade simulator: each exchange's native payloads from per-symbol random walks.

The same seed, symbols, rate and start time give byte-identical messages: randomness comes from
one NumPy generator drawn in fixed-size batches, and event time is a simulated clock advancing
by 1/rate per message (so at an exact publish rate it tracks the wall clock). Numbers are drawn
vectorised and rendered by the exchange in one pass, which keeps generation cheaper than the
Kafka produce call it feeds. Optional faults (exact duplicates, malformed payloads of several
kinds, late and out-of-order events) are reported per message for the fault manifest.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass, field

import numpy as np

from k2.errors import K2Error
from k2.exchanges import Exchange, TradeBatch

FAULT_KINDS = ("duplicate", "malformed", "late", "out_of_order")
# Ways a payload can be broken; Silver must route each of them to the dead-letter table.
MALFORMED_KINDS = (
    "truncated_json",
    "not_utf8",
    "empty",
    "missing_price",
    "bad_number",
    "non_positive_price",
    "future_time",
    "ancient_time",
)
LATE_BY_S = (30, 600)  # late events are 30 s to 10 min behind the clock
FORTY_YEARS_US = 40 * 365 * 86_400 * 1_000_000
BATCH_MESSAGES = 2048  # fixed, so the random stream (and every payload) does not depend on pacing
QTY_SAMPLE = 4096  # distinct trade sizes per symbol
VOLATILITY = 0.0002  # per-trade log-return standard deviation


@dataclass(frozen=True)
class FaultPlan:
    """Probability per message of each fault kind."""

    duplicate: float = 0.0
    malformed: float = 0.0
    late: float = 0.0
    out_of_order: float = 0.0

    @classmethod
    def parse(cls, text: str) -> FaultPlan:
        """``"duplicate=0.01,malformed=0.005"``; an empty string means no faults."""
        values: dict[str, float] = {}
        for part in filter(None, (p.strip() for p in text.split(","))):
            name, _, raw = part.partition("=")
            if name not in FAULT_KINDS:
                raise K2Error(
                    f"unknown fault kind {name!r} in {text!r}",
                    f"use {', '.join(FAULT_KINDS)} as kind=probability pairs.",
                )
            try:
                values[name] = float(raw)
            except ValueError:
                raise K2Error(
                    f"fault probability {raw!r} for {name} is not a number", "write it like duplicate=0.01."
                ) from None
            if not 0.0 <= values[name] <= 0.5:
                raise K2Error(
                    f"fault probability {name}={raw} is outside 0..0.5",
                    "faults are rare events: use a probability between 0 and 0.5.",
                )
        return cls(**values)

    @property
    def any(self) -> bool:
        return any((self.duplicate, self.malformed, self.late, self.out_of_order))


@dataclass(frozen=True)
class Fault:
    kind: str  # one of FAULT_KINDS
    detail: str  # the malformed variant, or what was duplicated / delayed / overtaken
    trade_ids: tuple[int, ...]


@dataclass
class MessageBatch:
    payloads: list[bytes]
    keys: list[bytes]
    trade_counts: list[int]  # trades per message (a duplicate counts its copied trades again)
    faults: dict[int, Fault] = field(default_factory=dict)  # position in payloads -> fault


class TradeSimulator:
    def __init__(
        self,
        exchange: Exchange,
        symbols: list[str],
        *,
        seed: int,
        rate: float,
        start_us: int,
        faults: FaultPlan | None = None,
    ) -> None:
        exchange.validate_symbols(symbols, simulated=True)
        instruments = [exchange.instruments[s] for s in symbols]
        self.exchange = exchange
        self.symbols = list(symbols)
        self.faults = faults or FaultPlan()
        self.rng = np.random.default_rng(seed)
        weights = 1.0 / np.arange(1, len(symbols) + 1)  # a few symbols dominate volume
        self._weights = weights / weights.sum()
        self._log_price = np.log([i.reference_price for i in instruments]) + self.rng.normal(0, 0.01, len(symbols))
        self._price_decimals = [i.price_decimals for i in instruments]
        # trade sizes: a fixed lognormal sample per symbol, drawn from by index (cheaper than
        # formatting a fresh size per trade, and just as varied for anything downstream)
        self._qty_strings = [
            _decimal_string(int(max(1, round(q))), i.qty_decimals)
            for i in instruments
            for q in self.rng.lognormal(0.0, 1.0, QTY_SAMPLE) * i.typical_qty * 10**i.qty_decimals
        ]
        self._next_id = self.rng.integers(1_000_000, 9_000_000, len(symbols))
        self._keys = [s.encode() for s in symbols]
        self._snapshot_due = set(range(len(symbols)))  # first message per symbol is a snapshot
        self._strings: dict[int, str] = {}  # ticks * symbols + symbol -> price string
        self.clock_us = float(start_us)
        self.step_us = 1_000_000 / rate if rate > 0 else 10.0

    def batches(self) -> Iterator[MessageBatch]:
        while True:
            yield self.next_batch()

    def next_batch(self) -> MessageBatch:
        trades, sym = self._draw(BATCH_MESSAGES)
        payloads = self.exchange.render(trades)
        keys = [self._keys[s] for s in sym]
        if not self.faults.any:
            return MessageBatch(payloads, keys, trades.sizes)
        return self._inject(trades, payloads, keys)

    # --- drawing --------------------------------------------------------------------------------
    def _draw(self, n: int) -> tuple[TradeBatch, list[int]]:
        rng, k = self.rng, len(self.symbols)
        sym = rng.choice(k, size=n, p=self._weights)
        if self.exchange.max_trades_per_message > 1:
            sizes = np.where(rng.random(n) < 0.3, rng.integers(2, self.exchange.max_trades_per_message + 1, n), 1)
        else:
            sizes = np.ones(n, dtype=np.int64)
        times = (self.clock_us + self.step_us * np.arange(1, n + 1)).astype(np.int64)
        self.clock_us += self.step_us * n
        trade_sym = np.repeat(sym, sizes)
        m = len(trade_sym)
        steps = rng.normal(0.0, VOLATILITY, m)
        qty_index = trade_sym * QTY_SAMPLE + rng.integers(0, QTY_SAMPLE, m)
        is_buy = rng.random(m) < 0.5
        price_ticks = np.empty(m, dtype=np.int64)
        ids = np.empty(m, dtype=np.int64)
        for s in range(k):
            mask = trade_sym == s
            count = int(mask.sum())
            if not count:
                continue
            walk = self._log_price[s] + np.cumsum(steps[mask])
            self._log_price[s] = walk[-1]
            price_ticks[mask] = np.maximum(1, np.rint(np.exp(walk) * 10 ** self._price_decimals[s]))
            ids[mask] = self._next_id[s] + np.arange(1, count + 1)
            self._next_id[s] += count
        sym_list = sym.tolist()
        snapshot = frozenset(self._first_messages(sym_list)) if self._snapshot_due else frozenset()
        trade_sym_list = trade_sym.tolist()
        batch = TradeBatch(
            symbol=[self.symbols[s] for s in trade_sym_list],
            trade_id=ids.tolist(),
            price=self._price_strings(price_ticks, trade_sym),
            qty=[self._qty_strings[i] for i in qty_index.tolist()],
            event_time_us=np.repeat(times, sizes).tolist(),
            is_buy=is_buy.tolist(),
            sizes=sizes.tolist(),
            snapshot=snapshot,
        )
        return batch, sym_list

    def _first_messages(self, sym_list: list[int]) -> list[int]:
        firsts = []
        for s in list(self._snapshot_due):
            if s in sym_list:
                firsts.append(sym_list.index(s))
                self._snapshot_due.discard(s)
        return firsts

    def _price_strings(self, ticks: np.ndarray, sym: np.ndarray) -> list[str]:
        """Exact decimal strings for tick counts, cached: a walk keeps revisiting nearby prices."""
        cache, k, decimals = self._strings, len(self.symbols), self._price_decimals
        get = cache.get

        def miss(code: int) -> str:
            t, s = divmod(code, k)
            text = _decimal_string(t, decimals[s])
            if len(cache) < 1_000_000:
                cache[code] = text
            return text

        return [get(code) or miss(code) for code in (ticks * k + sym).tolist()]

    # --- faults ----------------------------------------------------------------------------------
    def _inject(self, trades: TradeBatch, payloads: list[bytes], keys: list[bytes]) -> MessageBatch:
        plan, rng = self.faults, self.rng
        ids = trades.trade_ids_by_message()
        rolls = rng.random(len(payloads)).tolist()
        out = MessageBatch([], [], [])

        def emit(i: int, payload: bytes, fault: Fault | None = None) -> None:
            if fault is not None:
                out.faults[len(out.payloads)] = fault
            out.payloads.append(payload)
            out.keys.append(keys[i])
            out.trade_counts.append(trades.sizes[i])

        i = 0
        while i < len(payloads):
            roll = rolls[i]
            if roll < plan.malformed:
                variant = MALFORMED_KINDS[int(rng.integers(len(MALFORMED_KINDS)))]
                emit(i, self._malformed(trades.message(i), payloads[i], variant), Fault("malformed", variant, ids[i]))
            elif roll < plan.malformed + plan.late:
                late_by = int(rng.integers(*LATE_BY_S))
                emit(
                    i,
                    self._shifted(trades.message(i), -late_by * 1_000_000),
                    Fault("late", f"event time {late_by}s behind the clock", ids[i]),
                )
            elif roll < plan.malformed + plan.late + plan.out_of_order and i + 1 < len(payloads):
                # the next message overtakes this one: newer events arrive first
                emit(i + 1, payloads[i + 1], Fault("out_of_order", f"overtakes trade_ids {list(ids[i])}", ids[i + 1]))
                emit(i, payloads[i], Fault("out_of_order", f"overtaken by trade_ids {list(ids[i + 1])}", ids[i]))
                i += 1
            else:
                emit(i, payloads[i])
                if rng.random() < plan.duplicate:
                    emit(i, payloads[i], Fault("duplicate", f"exact copy of trade_ids {list(ids[i])}", ids[i]))
            i += 1
        return out

    def _shifted(self, message: TradeBatch, by_us: int) -> bytes:
        moved = TradeBatch(
            message.symbol,
            message.trade_id,
            message.price,
            message.qty,
            [t + by_us for t in message.event_time_us],
            message.is_buy,
            message.sizes,
        )
        return self.exchange.render(moved)[0]

    def _malformed(self, message: TradeBatch, payload: bytes, variant: str) -> bytes:
        if variant == "truncated_json":
            return payload[: len(payload) // 2]
        if variant == "not_utf8":
            return b"\xff\xfe" + payload[2:]
        if variant == "empty":
            return b""
        if variant == "future_time":
            return self._shifted(message, FORTY_YEARS_US)
        if variant == "ancient_time":
            return self._shifted(message, -FORTY_YEARS_US)
        # field-level damage: found through the exchange's declared price field, not its layout
        doc = json.loads(payload)
        trade = _first_dict_with(doc, self.exchange.price_field)
        original = trade[self.exchange.price_field]
        if variant == "missing_price":
            del trade[self.exchange.price_field]
        elif variant == "bad_number":
            trade[self.exchange.price_field] = "abc"
        else:  # non_positive_price, keeping the exchange's own type (string or number)
            trade[self.exchange.price_field] = "-1" if isinstance(original, str) else 0
        return json.dumps(doc, separators=(",", ":")).encode()


def _decimal_string(ticks: int, decimals: int) -> str:
    """``ticks`` units of 10**-decimals as an exact decimal string (12345, 2 -> "123.45")."""
    if not decimals:
        return str(ticks)
    return f"{ticks // 10**decimals}.{ticks % 10**decimals:0{decimals}d}"


def _first_dict_with(node: object, key: str) -> dict:
    """Depth-first search for the first JSON object holding ``key``."""
    if isinstance(node, dict):
        if key in node:
            return node
        children: list = list(node.values())
    elif isinstance(node, list):
        children = node
    else:
        children = []
    for child in children:
        if isinstance(child, dict | list):
            try:
                return _first_dict_with(child, key)
            except LookupError:
                continue
    raise LookupError(key)
