"""Hybrid answers: Silver/Gold for what the batch has processed, the same rules (compiled to DuckDB
SQL, ``k2.medallion.duckdb``, with Python for the records SQL leaves) over unprocessed Bronze rows and
the Kafka tail for the rest, merged so that a result reaches the last record Kafka holds and equals
what Silver/Gold will hold after the next batch.

Kafka out of reach degrades an answer instead of failing it: it then holds what Silver, Gold and
Bronze hold, and says so (``k2.query.partial``)."""

from __future__ import annotations

import datetime as dt
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import reduce

import pyarrow as pa

from k2.exchanges.duckdb import lit
from k2.medallion import duckdb as silver_sql
from k2.medallion import ledger
from k2.query import bars as bar_sql
from k2.query import duck, sources
from k2.query.bars import WIDTHS, merge_bars
from k2.query.partial import PartialAnswer, noted
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
TRADE_COLUMNS = tuple(TRADES_SCHEMA.names)


@dataclass
class Fresh:
    """Valid first copies of trades the batch has not processed (TRADES_SCHEMA), and where they came
    from."""

    trades: pa.Table
    bronze_rows: int = 0
    kafka_rows: int = 0
    judged: int = 0  # candidates judged in full (the rest were skipped by the window's first pass)
    seconds: dict[str, float] = field(default_factory=dict)  # per step: kafka, bronze_plan, bronze_read, rules
    missing: list[PartialAnswer] = field(default_factory=list)  # parts not read (the Kafka tail)


def _connect():  # -> duckdb.DuckDBPyConnection
    return duck.cursor()


def fresh_trades(
    settings: Settings, exchange: str, start: dt.datetime, end: dt.datetime, symbols: list[str] | None = None
) -> Fresh:
    """Trades with an event time in [start, end) (of ``symbols``, as the exchange spells them or
    BASE-QUOTE) from Bronze rows Silver has not covered and the Kafka tail, judged in DuckDB by the
    shared rules (``k2.medallion.duckdb``). A valid trade's Kafka timestamp lies within Silver's
    window around its event time, so only records stamped in [start - lead, end + age) are read;
    every copy of a trade shares its Kafka key (the symbol), so a symbol query reads only its keys."""
    judging = silver_sql.judging_of(settings, exchange)
    since = (start - dt.timedelta(seconds=judging.lead_s), end + dt.timedelta(seconds=judging.age_s))
    unprocessed = sources.gaps(ledger.covered(settings.lake, "silver", exchange))
    symbol_map = judging.symbols
    keys = None
    if symbols:
        wanted = {s for s, n in symbol_map.items() if s in symbols or n in symbols}
        keys = sources.KeyFilter(frozenset(s.encode() for s in wanted), frozenset(s.encode() for s in symbol_map))
    clock = time.perf_counter()
    missing = []
    try:
        tail = sources.kafka_tail(settings, exchange, keys).records
    except sources.TailUnreadable as exc:  # degrade: Bronze's records still answer
        tail = []
        lacking = f"the answer lacks {exchange}'s records past Bronze's last commit: {exc.cause}"
        missing.append(PartialAnswer(lacking, exc.fix))
    after_tail = time.perf_counter()
    con = _connect()
    try:
        con.register("_tail", pa.Table.from_pylist(tail, schema=sources.RECORD_SCHEMA))
        bronze = sources.bronze_relation(con, settings, exchange, since, unprocessed, keys)
        planned = time.perf_counter()
        con.execute(f"CREATE TEMP TABLE _bronze AS SELECT * FROM {bronze}")
        # Bronze holds each partition's offsets contiguously up to its last commit: a tail record at
        # or below the highest offset read is in Bronze already (read there, or filtered out there alike)
        con.execute(
            f"""CREATE TEMP TABLE _records AS SELECT * FROM _bronze UNION ALL
            SELECT t.* FROM _tail t WHERE t.kafka_timestamp >= {sources.sql_time(since[0])}
              AND t.kafka_timestamp < {sources.sql_time(since[1])}
              AND t.kafka_offset > coalesce(
                (SELECT max(b.kafka_offset) FROM _bronze b WHERE b.kafka_partition = t.kafka_partition), -1)"""
        )
        bronze_rows = con.sql("SELECT count(*) FROM _bronze").fetchall()[0][0]
        kafka_rows = con.sql("SELECT count(*) FROM _records").fetchall()[0][0] - bronze_rows
        silver_sql.drop_connection_events(con, "_records")
        after_bronze = time.perf_counter()
        window = (sources.sql_time(start), sources.sql_time(end))
        classified = silver_sql.classify_window(con, "_records", judging, window)
        wanted_symbols = ""
        if symbols:
            listed = ", ".join(lit(s) for s in symbols)
            wanted_symbols = f"AND (symbol IN ({listed}) OR exchange_symbol IN ({listed}))"
        trades = con.sql(
            f"""SELECT {lit(exchange)} AS exchange, symbol, exchange_symbol, trade_id, event_time, price,
                quantity, quote_amount, taker_side, kafka_topic, kafka_partition, kafka_offset, kafka_timestamp,
                ingested_at AS bronze_ingested_at
            FROM ({silver_sql.first_copies_sql(classified)})
            WHERE event_time >= {sources.sql_time(start)} AND event_time < {sources.sql_time(end)} {wanted_symbols}"""
        ).to_arrow_table()
        judged = con.sql(f"SELECT count(*) FROM {classified}").fetchall()[0][0]
    finally:
        con.close()
    steps = {
        "kafka": after_tail - clock,
        "bronze_plan": planned - after_tail,
        "bronze_read": after_bronze - planned,
        "rules": time.perf_counter() - after_bronze,
    }
    seconds = {k: round(v, 3) for k, v in steps.items()}
    return Fresh(trades.cast(TRADES_SCHEMA), bronze_rows, kafka_rows, judged, seconds, missing)


# (settings, exchange, start, end, symbols) -> Fresh: judged here, or by a query server's store
FreshSource = Callable[[Settings, str, dt.datetime, dt.datetime, "list[str] | None"], Fresh]
# the same -> the fresh trades' minute partials (k2.query.bars.partials), from a query server's store
MinutesSource = Callable[[Settings, str, dt.datetime, dt.datetime, "list[str] | None"], pa.Table]


def _fresh(
    settings: Settings,
    exchanges: list[str],
    symbols: list[str] | None,
    start: dt.datetime,
    end: dt.datetime,
    fresh: FreshSource,
) -> tuple[pa.Table, list[PartialAnswer]]:
    """The exchanges' fresh trades, and what they lack."""
    answers = [fresh(settings, exchange, start, end, symbols) for exchange in exchanges]
    tables = [a.trades for a in answers]
    missing = [note for a in answers for note in a.missing]
    return (pa.concat_tables(tables) if tables else TRADES_SCHEMA.empty_table()), missing


def _not_in(fresh: pa.Table, silver: pa.Table) -> pa.Table:
    """Fresh trades Silver does not hold already (a duplicate across batches is dropped there too)."""
    if not silver.num_rows or not fresh.num_rows:  # the usual case at the live edge: the batch lags it
        return fresh.cast(TRADES_SCHEMA)
    con = _connect()
    try:
        con.register("_fresh", fresh)
        con.register("_silver", silver.select(["exchange", "symbol", "trade_id"]))
        kept = con.sql("SELECT * FROM _fresh ANTI JOIN _silver USING (exchange, symbol, trade_id)").to_arrow_table()
    finally:
        con.close()
    return kept.cast(TRADES_SCHEMA)


def _silver(
    settings: Settings, exchanges, symbols, start, end, extra=None, columns: tuple[str, ...] = TRADE_COLUMNS
) -> pa.Table:
    """Silver's trades as TRADES_SCHEMA types, of ``columns`` only (Parquet decodes no others)."""
    table = sources.silver_trades(settings, exchanges, symbols, start, end, extra, columns)
    return table.select(list(columns)).cast(pa.schema([TRADES_SCHEMA.field(c) for c in columns]))


SORT_KEYS = ("event_time", "exchange", "trade_id")  # the order of a trades answer


def _sorted(table: pa.Table) -> pa.Table:
    """By SORT_KEYS. A query server's answer for one symbol mostly comes in that order already, and
    checking it costs a seventh of sorting. Otherwise the keys are sorted as contiguous arrays and
    the rows taken: several times faster than ``sort_by`` over the chunks of a few hundred thousand."""
    import pyarrow.compute as pc

    keys = table.select(SORT_KEYS).combine_chunks()
    if _in_order(keys):
        return table
    return table.take(pc.sort_indices(keys, sort_keys=[(k, "ascending") for k in SORT_KEYS]))


def _in_order(keys: pa.Table) -> bool:
    """Whether each row's keys are at most the next row's (compared in order; none is null)."""
    import pyarrow.compute as pc

    if keys.num_rows < 2:
        return True
    ordered = None
    for name in reversed(keys.schema.names):  # the last key decides a tie of all the others
        column = keys.column(name)
        this, after = column.slice(0, keys.num_rows - 1), column.slice(1)
        if ordered is None:
            ordered = pc.less_equal(this, after)
        else:
            ordered = pc.or_(pc.less(this, after), pc.and_(pc.equal(this, after), ordered))
    return bool(pc.all(ordered.fill_null(False)).as_py())


def trades(
    settings: Settings,
    exchanges: list[str],
    symbols: list[str] | None,
    start: dt.datetime,
    end: dt.datetime,
    fresh: FreshSource = fresh_trades,
) -> pa.Table:
    """Every trade of the exchanges and symbols with an event time in [start, end), to the last record
    in Kafka, as Silver holds (or after its next run will hold) them."""
    # Silver after the fresh part: a batch that commits in between leaves its trades in both, and the
    # merge drops the fresh copies; read the other way round, they would be in neither
    unprocessed, missing = _fresh(settings, exchanges, symbols, start, end, fresh)
    silver = _silver(settings, exchanges, symbols, start, end)
    return noted(_sorted(pa.concat_tables([silver, _not_in(unprocessed, silver)])), missing)


def bars(
    settings: Settings,
    interval: str,
    exchanges: list[str],
    symbols: list[str] | None,
    start: dt.datetime,
    end: dt.datetime,
    fresh: FreshSource = fresh_trades,
    fresh_minutes: MinutesSource | None = None,
) -> pa.Table:
    """OHLCV bars starting in [start, end): Gold's where Gold has every trade of the bar, computed on
    the fly (same definition as Gold) where one of its trades is not in Gold yet: fresh ones, and
    Silver's from ingestion ranges Gold has not covered. ``fresh_minutes`` gives the fresh trades'
    minute partials where they are kept (a query server's store); without it, the fresh trades are
    judged here and aggregated here."""
    from pyiceberg.expressions import And, GreaterThanOrEqual, LessThan, Or

    width = dt.timedelta(seconds=WIDTHS[interval])
    first, last = _floor(start, width), _floor(end - dt.timedelta(microseconds=1), width) + width
    dirty: set[tuple[str, str, dt.datetime]] = set()
    for exchange in exchanges:
        # Silver's trades from ingestion ranges Gold has not covered: their bars are not final in Gold
        not_in_gold = sources.gaps(ledger.covered(settings.lake, "gold", exchange))
        column = "bronze_ingested_at"
        ingested = [
            And(GreaterThanOrEqual(column, start.isoformat()), LessThan(column, end.isoformat()))
            for start, end in not_in_gold
        ]
        keys = ("exchange", "symbol", "event_time")
        dirty |= _bar_keys(_silver(settings, [exchange], symbols, first, last, reduce(Or, ingested), keys), width)
    missing: list[PartialAnswer] = []
    if fresh_minutes is None:
        judged, missing = _fresh(settings, exchanges, symbols, first, last, fresh)
        minutes = bar_sql.partials(judged)
        fresh = _within(judged)
    else:
        minutes = pa.concat_tables([fresh_minutes(settings, ex, first, last, symbols) for ex in exchanges])
    dirty |= _minute_bar_keys(minutes, width)
    gold = sources.gold_bars(settings, interval, exchanges, symbols, first, end)
    columns = [c for c in gold.schema.names if c != "computed_at"]
    kept = [r for r in gold.select(columns).to_pylist() if (r["exchange"], r["symbol"], r["bar_start"]) not in dirty]
    computed = []
    if dirty:
        # every trade of the dirty bars: Silver's over their span, and the fresh ones
        span = (min(k[2] for k in dirty), max(k[2] for k in dirty) + width)
        dirty_symbols = sorted({k[1] for k in dirty})
        silver = _silver(settings, exchanges, dirty_symbols, *span, columns=bar_sql.PARTIAL_INPUTS)
        every, lacking = _combined(settings, minutes, silver, symbols, fresh)
        missing += lacking
        computed = [r for r in merge_bars(every, interval) if (r["exchange"], r["symbol"], r["bar_start"]) in dirty]
    rows = kept + [{c: r[c] for c in columns} for r in computed if r["bar_start"] < end]
    out = pa.Table.from_pylist(rows, schema=pa.schema([gold.schema.field(c) for c in columns]))
    return noted(out.sort_by([("bar_start", "ascending"), ("exchange", "ascending"), ("symbol", "ascending")]), missing)


def _combined(
    settings: Settings, minutes: pa.Table, silver: pa.Table, symbols: list[str] | None, fresh: FreshSource
) -> tuple[pa.Table, list[PartialAnswer]]:
    """Minute partials of Silver's trades and the fresh ones together. A minute whose fresh trades may
    hold a copy of one of Silver's (an id not above Silver's highest for the symbol, or one not
    numeric: ids grow with time, so only a replayed or mis-stamped copy does this) is aggregated
    from its fresh trades with a copy of a trade Silver holds dropped (as the next batch drops it);
    the fresh partials of the other minutes are taken as they are, beside Silver's partials of the
    same minute: their trades are not Silver's, and partials of disjoint trades merge exactly. The
    fresh trades of those minutes are read after Silver, as in ``trades``. Returns the partials and
    what the fresh trades lack."""
    import pyarrow.compute as pc

    minute = bar_sql.minute_of("event_time")
    missing: list[PartialAnswer] = []
    con = _connect()
    try:
        con.register("_minutes", minutes)
        con.register("_silver", silver)
        highest = "SELECT exchange, symbol, max(TRY_CAST(trade_id AS HUGEINT)) AS top FROM _silver GROUP BY ALL"
        shared = f"""SELECT DISTINCT exchange, symbol, minute_us FROM _minutes JOIN ({highest}) USING (exchange, symbol)
          WHERE NOT coalesce(numeric_ids, false) OR TRY_CAST(lowest_id AS HUGEINT) <= top"""
        con.execute(f"CREATE TEMP TABLE _shared AS {shared}")
        key = "USING (exchange, symbol, minute_us)"
        alone = con.sql(f"SELECT * FROM _minutes ANTI JOIN _shared {key}").to_arrow_table()
        wanted = con.sql(f"SELECT * FROM _minutes SEMI JOIN _shared {key}").to_arrow_table()
        parts = [alone]
        if wanted.num_rows:
            lo, hi = pc.min_max(wanted.column("minute_us")).values()
            window = (_from_us(lo.as_py()), _from_us(hi.as_py() + bar_sql.MINUTE_US))
            exchanges = sorted(set(wanted.column("exchange").to_pylist()))
            trades, missing = _fresh(settings, exchanges, symbols, *window, fresh)
            con.register("_fresh", trades)
            raw = con.sql(
                f"SELECT * FROM (SELECT *, {minute} AS minute_us FROM _fresh) SEMI JOIN _shared {key}"
            ).to_arrow_table()
            kept = _not_in(raw.drop(["minute_us"]), silver).select(silver.schema.names)
            parts.append(bar_sql.partials(pa.concat_tables([silver, kept])))
        else:
            parts.append(bar_sql.partials(silver))
    finally:
        con.close()
    return pa.concat_tables(parts), missing


def _within(judged: pa.Table) -> FreshSource:
    """A fresh source answering from trades judged already (a window inside theirs)."""

    def fresh(settings: Settings, exchange: str, start: dt.datetime, end: dt.datetime, symbols) -> Fresh:
        con = _connect()
        try:
            con.register("_judged", judged)
            kept = con.sql(
                f"SELECT * FROM _judged WHERE exchange = {lit(exchange)} AND event_time >= {sources.sql_time(start)} "
                f"AND event_time < {sources.sql_time(end)}"
            ).to_arrow_table()
        finally:
            con.close()
        return Fresh(kept.cast(TRADES_SCHEMA))

    return fresh


def _bar_keys(trades: pa.Table, width: dt.timedelta) -> set[tuple[str, str, dt.datetime]]:
    """(exchange, symbol, bar start) of each bar the trades fall in."""
    con = _connect()
    try:
        con.register("_trades", trades)
        us = int(width.total_seconds()) * 1_000_000
        rows = con.sql(f"SELECT DISTINCT exchange, symbol, epoch_us(event_time) // {us} * {us} FROM _trades").fetchall()
    finally:
        con.close()
    return {(e, s, _from_us(start)) for e, s, start in rows}


def _minute_bar_keys(minutes: pa.Table, width: dt.timedelta) -> set[tuple[str, str, dt.datetime]]:
    """(exchange, symbol, bar start) of each bar the minute partials fall in."""
    us = int(width.total_seconds()) * 1_000_000
    keys = minutes.select(["exchange", "symbol", "minute_us"]).to_pydict().values()
    return {(e, s, _from_us(m // us * us)) for e, s, m in zip(*keys, strict=True)}


def _from_us(micros: int) -> dt.datetime:
    return dt.datetime(1970, 1, 1, tzinfo=dt.UTC) + dt.timedelta(microseconds=micros)


def _floor(moment: dt.datetime, width: dt.timedelta) -> dt.datetime:
    seconds = width.total_seconds()
    return dt.datetime.fromtimestamp(moment.timestamp() // seconds * seconds, dt.UTC)
