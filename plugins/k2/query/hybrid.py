"""Hybrid answers: Silver/Gold for what the batch has processed, the same rules (compiled for the
tail, ``k2.medallion.tail``) over unprocessed Bronze rows and the Kafka tail for the rest, merged
so that a result reaches the last record Kafka holds and equals what Silver/Gold will hold after
the next batch."""

from __future__ import annotations

import datetime as dt
import time
from dataclasses import dataclass, field
from typing import Any

import pyarrow as pa

from k2.exchanges import get_exchange, known_symbols
from k2.medallion import ledger
from k2.medallion.tail import Classifier, FirstCopies
from k2.query import sources
from k2.query.bars import WIDTHS, compute_bars
from k2.settings import Settings

MONEY = pa.decimal128(38, 18)
TIME = pa.timestamp("us", tz="UTC")
TRADES_SCHEMA = pa.schema(
    [
        ("exchange", pa.string()),
        ("symbol", pa.string()),
        ("exchange_symbol", pa.string()),
        ("trade_id", pa.string()),
        ("event_time", TIME),
        ("price", MONEY),
        ("quantity", MONEY),
        ("quote_amount", MONEY),
        ("taker_side", pa.string()),
        ("kafka_topic", pa.string()),
        ("kafka_partition", pa.int32()),
        ("kafka_offset", pa.int64()),
        ("kafka_timestamp", TIME),
        ("bronze_ingested_at", TIME),
    ]
)


@dataclass
class Fresh:
    """Valid first copies of trades the batch has not processed, and where they came from."""

    trades: list[dict[str, Any]] = field(default_factory=list)
    bronze_rows: int = 0
    kafka_rows: int = 0
    seconds: dict[str, float] = field(default_factory=dict)  # per step: kafka, bronze, rules


def fresh_trades(
    settings: Settings, exchange: str, start: dt.datetime, end: dt.datetime, symbols: list[str] | None = None
) -> Fresh:
    """Trades with an event time in [start, end) from Bronze rows Silver has not covered and the
    Kafka tail. A valid trade's Kafka timestamp lies within Silver's window around its event time,
    so only records stamped in [start - lead, end + age) are read."""
    batch = settings.batch
    lead, age = dt.timedelta(seconds=batch.silver_max_event_lead_s), dt.timedelta(seconds=batch.silver_max_event_age_s)
    since = (start - lead, end + age)
    unprocessed = sources.gaps(ledger.covered(settings.lake, "silver", exchange))
    ex = get_exchange(exchange)
    symbol_map = known_symbols(settings, ex)
    keys = None
    if symbols:
        wanted = {s for s, n in symbol_map.items() if s in symbols or n in symbols}
        keys = sources.KeyFilter(frozenset(s.encode() for s in wanted), frozenset(s.encode() for s in symbol_map))
    clock = time.perf_counter()
    tail = sources.kafka_tail(settings, exchange, keys)
    after_tail = time.perf_counter()
    classifier = Classifier(exchange, ex.rules, symbol_map, batch.silver_max_event_lead_s, batch.silver_max_event_age_s)
    keep = FirstCopies(lambda row: start <= row["event_time"] < end, _slim)
    highest: dict[int, int] = {}  # partition -> the highest Bronze offset read
    bronze_rows = 0
    for records in sources.bronze_batches(settings, exchange, since, unprocessed, keys):
        bronze_rows += len(records)
        for r in records:
            highest[r["kafka_partition"]] = max(highest.get(r["kafka_partition"], -1), r["kafka_offset"])
        keep.add(classifier.candidates(records))
    after_bronze = time.perf_counter()
    # Bronze holds each partition's offsets contiguously up to its last commit: a tail record at or
    # below the highest offset read is in Bronze already (read there, or filtered out there alike)
    kafka = [
        r
        for r in tail.records
        if r["kafka_offset"] > highest.get(r["kafka_partition"], -1) and since[0] <= r["kafka_timestamp"] < since[1]
    ]
    keep.add(classifier.candidates(kafka))
    trades = keep.trades()
    for t in trades:
        t["exchange"], t["bronze_ingested_at"] = exchange, t["ingested_at"]
    steps = {
        "kafka": after_tail - clock,
        "bronze": after_bronze - after_tail,
        "rules": time.perf_counter() - after_bronze,
    }
    return Fresh(trades, bronze_rows, len(kafka), {k: round(v, 3) for k, v in steps.items()})


_KEPT = (
    *(n for n in TRADES_SCHEMA.names if n not in ("exchange", "quote_amount", "bronze_ingested_at")),
    "ingested_at",
    "item_index",
)


def _slim(row: dict[str, Any]) -> dict[str, Any]:
    """What a fresh trade keeps of its candidate (not its payload)."""
    return {name: row[name] for name in _KEPT} | {"quote_amount": row["_quote"]}


def _matches(row: dict[str, Any], symbols: list[str] | None) -> bool:
    return not symbols or row["symbol"] in symbols or row["exchange_symbol"] in symbols


def _fresh_rows(
    settings: Settings,
    exchanges: list[str],
    symbols: list[str] | None,
    start: dt.datetime,
    end: dt.datetime,
    known: set,
) -> list[dict[str, Any]]:
    """Fresh trades of the symbols, less those Silver already holds (``known`` keys: a duplicate
    across batches is dropped there too)."""
    rows = []
    for exchange in exchanges:
        for t in fresh_trades(settings, exchange, start, end, symbols).trades:
            if _matches(t, symbols) and (exchange, t["symbol"], t["trade_id"]) not in known:
                rows.append({name: t[name] for name in TRADES_SCHEMA.names})
    return rows


def _keys(table: pa.Table) -> set[tuple[str, str, str]]:
    columns = (table["exchange"].to_pylist(), table["symbol"].to_pylist(), table["trade_id"].to_pylist())
    return set(zip(*columns, strict=True))


def _silver(settings: Settings, exchanges, symbols, start, end, extra=None) -> pa.Table:
    table = sources.silver_trades(settings, exchanges, symbols, start, end, extra)
    return table.select(TRADES_SCHEMA.names).cast(TRADES_SCHEMA)


def _sorted(table: pa.Table) -> pa.Table:
    return table.sort_by([("event_time", "ascending"), ("exchange", "ascending"), ("trade_id", "ascending")])


def trades(
    settings: Settings, exchanges: list[str], symbols: list[str] | None, start: dt.datetime, end: dt.datetime
) -> pa.Table:
    """Every trade of the exchanges and symbols with an event time in [start, end), to the last record
    in Kafka, as Silver holds (or after its next run will hold) them."""
    silver = _silver(settings, exchanges, symbols, start, end)
    fresh = _fresh_rows(settings, exchanges, symbols, start, end, _keys(silver))
    return _sorted(pa.concat_tables([silver, pa.Table.from_pylist(fresh, schema=TRADES_SCHEMA)]))


def bars(
    settings: Settings,
    interval: str,
    exchanges: list[str],
    symbols: list[str] | None,
    start: dt.datetime,
    end: dt.datetime,
) -> pa.Table:
    """OHLCV bars starting in [start, end): Gold's where Gold has every trade of the bar, computed on
    the fly (same definition as Gold) where one of its trades is not in Gold yet: fresh ones, and
    Silver's from ingestion ranges Gold has not covered."""
    from pyiceberg.expressions import GreaterThanOrEqual

    width = dt.timedelta(seconds=WIDTHS[interval])
    first, last = _floor(start, width), _floor(end - dt.timedelta(microseconds=1), width) + width
    late = []
    for exchange in exchanges:
        not_in_gold = sources.gaps(ledger.covered(settings.lake, "gold", exchange))
        since = GreaterThanOrEqual("bronze_ingested_at", not_in_gold[0][0].isoformat())
        rows = _silver(settings, [exchange], symbols, first, last, since).to_pylist()
        late += [r for r in rows if sources.in_ranges(r["bronze_ingested_at"], not_in_gold)]
    fresh_all = []
    for exchange in exchanges:
        fresh_all += [t for t in fresh_trades(settings, exchange, first, last, symbols).trades if _matches(t, symbols)]
    dirty = {(r["exchange"], r["symbol"], _floor(r["event_time"], width)) for r in late + fresh_all}
    gold = sources.gold_bars(settings, interval, exchanges, symbols, first, end)
    columns = [c for c in gold.schema.names if c != "computed_at"]
    kept = [r for r in gold.select(columns).to_pylist() if (r["exchange"], r["symbol"], r["bar_start"]) not in dirty]
    computed = []
    if dirty:
        # every trade of the dirty bars: Silver's over their span, plus the fresh ones
        span = (min(k[2] for k in dirty), max(k[2] for k in dirty) + width)
        dirty_symbols = sorted({k[1] for k in dirty})
        silver = _silver(settings, exchanges, dirty_symbols, *span)
        known = _keys(silver)
        fresh = [
            {name: t[name] for name in TRADES_SCHEMA.names}
            for t in fresh_all
            if span[0] <= t["event_time"] < span[1] and (t["exchange"], t["symbol"], t["trade_id"]) not in known
        ]
        every = pa.concat_tables([silver, pa.Table.from_pylist(fresh, schema=TRADES_SCHEMA)])
        computed = [r for r in compute_bars(every, interval) if (r["exchange"], r["symbol"], r["bar_start"]) in dirty]
    rows = kept + [{c: r[c] for c in columns} for r in computed if r["bar_start"] < end]
    out = pa.Table.from_pylist(rows, schema=pa.schema([gold.schema.field(c) for c in columns]))
    return out.sort_by([("bar_start", "ascending"), ("exchange", "ascending"), ("symbol", "ascending")])


def _floor(moment: dt.datetime, width: dt.timedelta) -> dt.datetime:
    seconds = width.total_seconds()
    return dt.datetime.fromtimestamp(moment.timestamp() // seconds * seconds, dt.UTC)
