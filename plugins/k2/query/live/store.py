"""The judged records a query server keeps: each exchange's valid trade candidates (Silver's rules,
``k2.medallion.duckdb``) with their Kafka coordinates, in a DuckDB database of its own. Records are
judged once, on arrival; a query selects typed candidates and chooses first copies among them."""

from __future__ import annotations

import datetime as dt
import threading
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc

from k2.exchanges.duckdb import lit
from k2.feeds.events import CONNECTION_KIND, KIND_HEADER
from k2.medallion import duckdb as silver_sql
from k2.medallion.rules import SIDES
from k2.query.bars import partials_sql
from k2.query.hybrid import TRADES_SCHEMA
from k2.query.live import Offsets
from k2.query.live.minutes import MinutePartials
from k2.query.live.recent import RecentTrades
from k2.query.sources import sql_time
from k2.settings import Settings

# what a query needs of a valid candidate (k2.medallion.duckdb.CLASSIFIED less the texts and verdicts,
# and the topic: one per exchange, made for a whole answer in Arrow)
KEPT = (
    "kafka_partition",
    "kafka_offset",
    "kafka_timestamp",
    "item_index",
    "exchange_symbol",
    "trade_id",
    "event_time",
    "taker_side",
    "symbol",
    "price",
    "quantity",
    "quote_amount",
)
# what an answer's trades take from the store; the rest of TRADES_SCHEMA is the same for every row
READ = tuple(name for name in TRADES_SCHEMA.names if name in KEPT)


def _table(exchange: str) -> str:
    return f"live_{exchange}"


class LiveStore:
    """Valid candidates per exchange. Thread-safe: each call works on a cursor of its own."""

    def __init__(self, settings: Settings, spill_dir: Path, memory_limit: str = "1GB") -> None:
        import duckdb

        self._settings = settings
        # in memory: a database file would write its log and sync it at every round, for a cache that
        # is rebuilt from Kafka at each start; past memory_limit, a long backlog spills to spill_dir
        # (named: DuckDB's default for an in-memory database is .tmp in the working directory)
        self._db = duckdb.connect(":memory:", config={"temp_directory": str(spill_dir)})
        self._db.execute("SET TimeZone = 'UTC'")
        self._db.execute(f"SET memory_limit = {lit(memory_limit)}")
        self._judges: dict[str, silver_sql.Judging] = {}
        self._adders: dict[str, duckdb.DuckDBPyConnection] = {}
        self._lock = threading.Lock()
        self._highest: dict[str, dict[str, int]] = {ex: {} for ex in settings.exchanges}
        self._minutes = {ex: MinutePartials(ex, _table(ex)) for ex in settings.exchanges}
        self._recent = {ex: RecentTrades(settings.batch.query_recent_s) for ex in settings.exchanges}
        self._topics = {ex: settings.topic_for(ex) for ex in settings.exchanges}
        for exchange in settings.exchanges:
            self._judges[exchange] = silver_sql.judging_of(settings, exchange)
            symbols = self._judges[exchange].symbols
            self._db.execute(f"CREATE TABLE {_table(exchange)} ({_columns_ddl(symbols)})")
            self._minutes[exchange].create(self._db)

    def _cursor(self):
        with self._lock:
            cursor = self._db.cursor()
        cursor.execute("SET TimeZone = 'UTC'")
        return cursor

    def add(self, exchange: str, records: pa.Table) -> int:
        """Judges ``records`` (``k2.query.sources.RECORD_SCHEMA``) and keeps their valid candidates;
        returns how many it kept. Connection events are dropped, as Silver routes them elsewhere.
        One thread per exchange calls it (the server's follower of that topic)."""
        con = self._adder(exchange)
        con.register("_arrived", records)
        try:
            source = "_arrived"
            if _may_hold_events(records):  # rare: most polls are judged straight from Arrow, uncopied
                con.execute("CREATE OR REPLACE TEMP TABLE _records AS SELECT * FROM _arrived")
                silver_sql.drop_connection_events(con, "_records")
                source = "_records"
            # the store keeps valid candidates: no details to word
            judged = silver_sql.judged(con, source, self._judges[exchange], details=False)
            kept = self._keep(con, exchange, judged, self._minutes[exchange].judged + 1)
        finally:
            silver_sql.release_judged(con)
            con.unregister("_arrived")
        self._minutes[exchange].judged += 1
        return kept

    def _adder(self, exchange: str):
        """The exchange's own cursor for judging, kept from poll to poll."""
        if exchange not in self._adders:
            self._adders[exchange] = self._cursor()
        return self._adders[exchange]

    def _keep(self, con, exchange: str, judged: str, round_: int) -> int:
        """Inserts the valid candidates of ``judged`` (SQL), each marked contested unless it is certainly
        the first copy of its trade to arrive: a numeric id above every id this symbol had before, and
        alone in its poll. Of any two copies of a trade, the later to arrive is so marked, so a trade
        without a contested copy has one copy only, and a query takes it without ranking. Stored in
        event-time order within the round: read back, a symbol's trades are mostly in order already.
        One statement, which also returns what the next round's marks need (and the kept rows, for the
        recent trades, ``RecentTrades``, when they are kept): a statement costs more
        than a poll's rows (judging 500 Binance records idle took 22.1 ms in nine statements, 16.7 ms
        in five; 2,500 records 30.9 and 22.9 ms)."""
        highest = self._highest[exchange]
        known = " ".join(f"WHEN {lit(symbol)} THEN {top}" for symbol, top in highest.items())
        above = f"CASE symbol {known} END" if known else "NULL::BIGINT"
        valid = f"SELECT *, TRY_CAST(trade_id AS BIGINT) AS _id FROM ({judged}) WHERE reason IS NULL"
        twice = "(SELECT symbol, trade_id, true AS twice FROM valid GROUP BY ALL HAVING count(*) > 1)"
        recent = self._recent[exchange]
        returned = f"{', '.join(READ)}, contested" if recent.keeping else "symbol::VARCHAR AS symbol"
        inserted = con.sql(
            f"""INSERT INTO {_table(exchange)} WITH valid AS MATERIALIZED ({valid}) SELECT {", ".join(KEPT)},
              _id IS NULL OR _id <= coalesce({above}, -1) OR coalesce(twice, false), {int(round_)}
            FROM valid LEFT JOIN {twice} USING (symbol, trade_id) ORDER BY event_time, trade_id
            RETURNING {returned}, TRY_CAST(trade_id AS BIGINT) AS id"""
        ).to_arrow_table()
        symbols = inserted.column("symbol")
        if recent.keeping:
            trades = self._as_trades(exchange, inserted)
            recent.add(trades, inserted.column("contested"))
            symbols = trades.column("symbol")  # a plain string, as the marks keep it
        ids = pa.table({"symbol": symbols, "id": inserted.column("id")})
        tops = ids.group_by("symbol").aggregate([("id", "max")]).to_pydict()
        for symbol, top in zip(tops["symbol"], tops["id_max"], strict=True):
            if top is not None:
                highest[symbol] = max(top, highest.get(symbol, top))
        return inserted.num_rows

    def keep_minutes(self, exchange: str) -> None:
        """Keeps the minute partials of the rounds judged since the last call (``MinutePartials.keep``)."""
        con = self._cursor()
        try:
            self._minutes[exchange].keep(con)
        finally:
            con.close()

    def prune(self, exchange: str, below: Offsets) -> int:
        """Forgets the candidates of records before ``below`` (Silver has processed them)."""
        if not below:
            return 0
        con, minutes = self._cursor(), self._minutes[exchange]
        try:
            with minutes.lock:
                deleted = con.execute(
                    f"DELETE FROM {_table(exchange)} t USING ({_offsets_sql(below)}) b(p, o) "
                    "WHERE t.kafka_partition = b.p AND t.kafka_offset < b.o"
                ).fetchall()[0][0]
                minutes.forget(con, _offsets_sql(below))
            return int(deleted)
        finally:
            con.close()

    def rows(self, exchange: str) -> int:
        con = self._cursor()
        try:
            return int(con.execute(f"SELECT count(*) FROM {_table(exchange)}").fetchall()[0][0])
        finally:
            con.close()

    def first_copies(
        self,
        exchange: str,
        start: dt.datetime,
        end: dt.datetime,
        symbols: list[str] | None,
        from_offsets: Offsets,
    ) -> pa.Table:
        """The valid first copies (Silver's rank: partition, offset, item) with an event time in
        [start, end), among the candidates of records at or after ``from_offsets``, in TRADES_SCHEMA.
        Without a contested copy among them (the usual case), in the order the store keeps them: a
        symbol's trades are then mostly in event-time order already, which spares the caller's sort
        most of its work. A recent window comes from the trades kept in this form (``RecentTrades``)."""
        recent = self._recent[exchange].trades(start, end, self._named(exchange, symbols), from_offsets)
        if recent is not None:
            return recent
        copies = self._copies_sql(exchange, start, end, symbols, from_offsets)
        con = self._cursor()
        try:
            # one read: a copy in the window with no contested one among them is its trade's only copy
            # (a contested copy of a trade whose first copy lies outside the window is in it, and is seen)
            read = ", ".join(READ)
            table = con.sql(f"SELECT {read}, contested FROM {copies} WHERE {_inside(start, end)}").to_arrow_table()
            if table.num_rows and pc.any(table.column("contested")).as_py():
                ranked = self._ranked_sql(exchange, start, end, symbols, from_offsets)
                table = con.sql(f"SELECT {read} FROM ({ranked})").to_arrow_table()
            return self._as_trades(exchange, table)
        finally:
            con.close()

    def _named(self, exchange: str, symbols: list[str] | None) -> set[str]:
        """K2's spelling of the exchange's symbols ``symbols`` names in either spelling (``_wanted_sql``)."""
        known = self._judges[exchange].symbols  # the exchange's spelling -> K2's
        if not symbols:
            return set(known.values())
        return {ours for theirs, ours in known.items() if theirs in symbols or ours in symbols}

    def _as_trades(self, exchange: str, table: pa.Table) -> pa.Table:
        """``table``'s READ columns as TRADES_SCHEMA: the columns every row shares are made here, not
        converted from the database row by row (a tenth of a large answer's read), and the store's
        enumerated texts become plain strings."""
        rows = table.num_rows
        shared = {
            "exchange": pa.repeat(pa.scalar(exchange), rows),
            "kafka_topic": pa.repeat(pa.scalar(self._topics[exchange]), rows),
            "bronze_ingested_at": pa.nulls(rows, TRADES_SCHEMA.field("bronze_ingested_at").type),
        }
        columns = [shared[name] if name in shared else table.column(name) for name in TRADES_SCHEMA.names]
        return pa.Table.from_arrays(columns, names=TRADES_SCHEMA.names).cast(TRADES_SCHEMA)

    def minute_partials(
        self,
        exchange: str,
        start: dt.datetime,
        end: dt.datetime,
        symbols: list[str] | None,
        from_offsets: Offsets,
    ) -> pa.Table:
        """``k2.query.bars.partials`` of ``first_copies``, aggregated where the trades are: over whole
        minutes, mostly from partials kept since an earlier query (``k2.query.live.minutes``)."""

        def firsts(begin: dt.datetime, until: dt.datetime) -> str:
            ranked = self._ranked_sql(exchange, begin, until, symbols, from_offsets)
            return f"SELECT {lit(exchange)} AS exchange, * FROM ({ranked})"

        con = self._cursor()
        try:
            if any(t.timestamp() % 60 for t in (start, end)):  # not whole minutes: none kept apply
                table = con.sql(partials_sql(f"({firsts(start, end)})")).to_arrow_table()
            else:
                copies = self._copies_sql(exchange, start, end, symbols, from_offsets)
                below = _below_sql(from_offsets)
                table = self._minutes[exchange].read(con, start, end, _wanted_sql(symbols), below, copies, firsts)
            return _plain(table)
        finally:
            con.close()

    def _copies_sql(
        self, exchange: str, start: dt.datetime, end: dt.datetime, symbols: list[str] | None, from_offsets: Offsets
    ) -> str:
        """SQL: the candidates that may be a first copy of a trade with an event time in [start, end):
        a valid trade's Kafka timestamp lies in [event time - lead, event time + age], so only those
        stamped in [start - lead, end + age), from ``from_offsets`` on."""
        judging = self._judges[exchange]
        since = start - dt.timedelta(seconds=judging.lead_s)
        until = end + dt.timedelta(seconds=judging.age_s)
        # a filter, not a join: a scan that only filters keeps the rows in the order they were stored
        firsts = " ".join(f"WHEN {int(p)} THEN {int(o)}" for p, o in sorted(from_offsets.items()))
        first_offset = f"CASE kafka_partition {firsts} ELSE 0 END" if from_offsets else "0"
        return f"""(SELECT * FROM {_table(exchange)} WHERE kafka_offset >= {first_offset}
            AND kafka_timestamp >= {sql_time(since)} AND kafka_timestamp < {sql_time(until)}
            AND {_wanted_sql(symbols)})"""

    def _ranked_sql(
        self, exchange: str, start: dt.datetime, end: dt.datetime, symbols: list[str] | None, from_offsets: Offsets
    ) -> str:
        """SQL: the first copies with an event time in [start, end), with the store's columns. Only the
        trades with a contested copy are ranked among their copies."""
        inside = _inside(start, end)
        rank = "row_number() OVER (PARTITION BY symbol, trade_id ORDER BY kafka_partition, kafka_offset, item_index)"
        # each part reads the candidates itself: a shared CTE over every one in the range is materialised
        copies = self._copies_sql(exchange, start, end, symbols, from_offsets)
        return f"""WITH disputed AS (SELECT DISTINCT symbol, trade_id FROM {copies} WHERE contested)
  SELECT * FROM {copies} ANTI JOIN disputed USING (symbol, trade_id) WHERE {inside} AND NOT contested
  UNION ALL BY NAME
  SELECT * FROM (SELECT * FROM {copies} SEMI JOIN disputed USING (symbol, trade_id) QUALIFY {rank} = 1)
  WHERE {inside}"""

    def close(self) -> None:
        for cursor in self._adders.values():
            cursor.close()
        self._db.close()


def _inside(start: dt.datetime, end: dt.datetime) -> str:
    return f"event_time >= {sql_time(start)} AND event_time < {sql_time(end)}"


def _columns_ddl(symbols: dict[str, str]) -> str:
    """The candidates' columns (k2.medallion.duckdb.CLASSIFIED's KEPT), and contested, a copy that may
    not be its trade's only one (see ``add``), ranked among its copies at query time; round, the
    judging that kept it (k2.query.live.minutes keeps partials per round). A valid candidate's
    symbols and side are among a few known texts (the others are dead letters): kept as
    enumerations, a query compares and reads them as small numbers (900,000 trades, idle: 62 ->
    51 ms, the cast back to strings included)."""
    texts = {"symbol": set(symbols.values()), "exchange_symbol": set(symbols), "taker_side": set(SIDES)}
    ddl = [
        f"{column} ENUM({', '.join(map(lit, sorted(texts[column])))})"
        if texts.get(column)
        else silver_sql.columns_ddl(silver_sql.CLASSIFIED, (column,))
        for column in KEPT
    ]
    return ", ".join([*ddl, "contested BOOLEAN", "round BIGINT"])


def _plain(table: pa.Table) -> pa.Table:
    """``table`` with its enumerated columns (dictionaries) as plain ones."""
    schema = pa.schema([f.with_type(f.type.value_type) if pa.types.is_dictionary(f.type) else f for f in table.schema])
    return table.cast(schema)


def _offsets_sql(offsets: Offsets) -> str:
    return "VALUES " + ", ".join(f"({int(p)}, {int(o)})" for p, o in sorted(offsets.items()))


def _below_sql(offsets: Offsets) -> str:
    """SQL rows (partition, offset), none for no offsets."""
    return _offsets_sql(offsets) if offsets else "SELECT NULL::INTEGER, NULL::BIGINT WHERE false"


def _wanted_sql(symbols: list[str] | None) -> str:
    """SQL: a candidate of ``symbols`` (as the exchange spells them or as K2 does); every one without."""
    if not symbols:
        return "true"
    listed = ", ".join(lit(s) for s in symbols)
    return f"(symbol IN ({listed}) OR exchange_symbol IN ({listed}))"


def _may_hold_events(records: pa.Table) -> bool:
    """Whether a record carries the connection-event header (``k2.feeds.events``): only those may be
    events, which ``drop_connection_events`` then decides by the one rule."""
    headers = pc.list_flatten(records.column("headers"))
    if not len(headers):
        return False
    marked = pc.and_(
        pc.equal(pc.struct_field(headers, "key"), KIND_HEADER),
        pc.equal(pc.struct_field(headers, "value"), pa.scalar(CONNECTION_KIND, pa.binary())),
    )
    return bool(pc.any(marked).as_py())
