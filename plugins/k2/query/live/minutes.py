"""Minute partials (``k2.query.bars``) of a query server's judged trades, kept between queries, so
that bars over an hour of fresh trades read a few thousand rows instead of aggregating millions.

A candidate's contested mark never changes, so the partials of a judging round's uncontested
candidates (its certain first copies) are computed once and kept per round: by the server every few
seconds (``keep``), or by a bars query that comes first. A query takes them for the minutes no
trade with a contested copy falls in, and aggregates the first copies (the store's rank) of the
other minutes; a round that holds records below the query's first unprocessed offsets is
aggregated from its remaining candidates instead.
When Silver's processing passes a round's records, its kept partials are dropped and it is
aggregated again from what is left of it."""

from __future__ import annotations

import datetime as dt
import threading
from collections.abc import Callable

import pyarrow as pa

from k2.exchanges.duckdb import lit
from k2.query.bars import MINUTE_US, minute_of, partials_sql

KEYS = ("round", "exchange_symbol")  # what kept partials are grouped by besides Gold's bar keys


class MinutePartials:
    """One exchange's kept partials, beside its candidates (the table ``live``, with a ``round``
    column) in the store's database. ``lock`` serialises a query's aggregating and reading with the
    store's forgetting (deleting processed candidates, then ``forget``)."""

    def __init__(self, exchange: str, live: str) -> None:
        self.exchange, self.live = exchange, live
        self.parts, self.lows = f"parts_{exchange}", f"lows_{exchange}"
        self.judged = 0  # the last round the follower committed
        self._aggregated = 0  # rounds up to this one have their partials kept...
        self._stale: set[int] = set()  # ...except these, which Silver's processing passed in part
        self.lock = threading.Lock()

    def create(self, con) -> None:
        empty = f"(SELECT {lit(self.exchange)} AS exchange, * FROM {self.live} WHERE false)"
        con.execute(f"CREATE TABLE {self.parts} AS {partials_sql(empty, KEYS)}")
        con.execute(f"CREATE TABLE {self.lows} (round BIGINT, kafka_partition INTEGER, lowest BIGINT)")

    def forget(self, con, below: str) -> None:
        """After the candidates before ``below`` (SQL: rows of partition, offset) were deleted: the
        rounds that held some are aggregated again from what is left of them. With ``lock`` held."""
        passed = (
            f"SELECT DISTINCT round FROM {self.lows} l JOIN ({below}) b(p, o) "
            "ON l.kafka_partition = b.p WHERE l.lowest < b.o"
        )
        rounds = {r for (r,) in con.execute(passed).fetchall()}
        if rounds:
            listed = ", ".join(map(str, sorted(rounds)))
            con.execute(f"DELETE FROM {self.parts} WHERE round IN ({listed})")
            con.execute(f"DELETE FROM {self.lows} WHERE round IN ({listed})")
            self._stale |= {r for r in rounds if r <= self._aggregated}

    def keep(self, con) -> None:
        """Keeps the partials of the rounds judged since the last call now, rather than at the next
        bars query: after a quiet spell without one, that query aggregated every round since (the
        first of benchmarks/query.py's, 3.4-3.7 s for 1.6M trades, its others about 1 s)."""
        with self.lock:
            self._aggregate(con)

    def read(
        self,
        con,
        start: dt.datetime,
        end: dt.datetime,
        wanted: str,
        below: str,
        copies: str,
        firsts: Callable[[dt.datetime, dt.datetime], str],
    ) -> pa.Table:
        """The partials of the minutes in [start, end) (whole minutes) of the store's first copies
        (``firsts(start, end)``: their SQL, ranked among the candidates ``copies``, SQL, gives for the
        whole window): kept ones for the minutes no copy of a contested trade falls in, the rest
        aggregated now. ``wanted``: a SQL condition on symbol and exchange_symbol; ``below``: SQL
        rows (partition, offset), the first unprocessed offsets."""
        with self.lock:
            self._aggregate(con)
            start_us, end_us = (int(t.timestamp() * 1_000_000) for t in (start, end))
            unclean = (
                f"SELECT DISTINCT round FROM {self.lows} l JOIN ({below}) b(p, o) "
                "ON l.kafka_partition = b.p WHERE l.lowest < b.o"
            )
            # a round holding records Silver has processed: its candidates from the first unprocessed offsets
            rest = f"""(SELECT {lit(self.exchange)} AS exchange, t.* FROM {self.live} t
              LEFT JOIN ({below}) b(p, o) ON t.kafka_partition = b.p
              WHERE t.round IN ({unclean}) AND t.kafka_offset >= coalesce(b.o, 0) AND NOT t.contested
                AND epoch_us(t.event_time) >= {start_us} AND epoch_us(t.event_time) < {end_us} AND {wanted})"""
            keys = ", ".join(KEYS)
            kept = f"""SELECT * EXCLUDE ({keys}) FROM {self.parts}
              WHERE round NOT IN ({unclean}) AND minute_us >= {start_us} AND minute_us < {end_us} AND {wanted}
              UNION ALL BY NAME SELECT * EXCLUDE ({keys}) FROM ({partials_sql(rest, KEYS)})"""
            disputed = f"SELECT DISTINCT symbol, trade_id FROM {copies} WHERE contested"
            if not con.execute(f"SELECT count(*) FROM ({disputed})").fetchall()[0][0]:
                return con.sql(kept).to_arrow_table()
            # the minutes a copy of a contested trade falls in: aggregated from the window's first copies
            con.execute(
                f"CREATE OR REPLACE TEMP TABLE _affected AS SELECT DISTINCT symbol, {minute_of('event_time')} AS "
                f"minute_us FROM {copies} SEMI JOIN ({disputed}) USING (symbol, trade_id)"
            )
            try:
                low, high = con.execute("SELECT min(minute_us), max(minute_us) FROM _affected").fetchall()[0]
                span = (_moment(max(low, start_us)), _moment(min(high + MINUTE_US, end_us)))
                ranked = partials_sql(f"({firsts(*span)})")
                return con.sql(
                    f"""SELECT * FROM ({kept}) ANTI JOIN _affected USING (symbol, minute_us)
                    UNION ALL BY NAME SELECT * FROM ({ranked}) SEMI JOIN _affected USING (symbol, minute_us)"""
                ).to_arrow_table()
            finally:
                con.execute("DROP TABLE _affected")

    def _aggregate(self, con) -> None:
        """Keeps the partials of the rounds judged since the last call, and of the stale ones."""
        top, stale = self.judged, sorted(self._stale)
        if top <= self._aggregated and not stale:
            return
        which = f"(round > {self._aggregated} AND round <= {top})"
        if stale:
            which += f" OR round IN ({', '.join(map(str, stale))})"
        rows = f"(SELECT {lit(self.exchange)} AS exchange, * FROM {self.live} WHERE ({which}) AND NOT contested)"
        con.execute("BEGIN TRANSACTION")
        try:
            con.execute(
                f"INSERT INTO {self.lows} SELECT round, kafka_partition, min(kafka_offset) "
                f"FROM {self.live} WHERE {which} GROUP BY ALL"
            )
            con.execute(f"INSERT INTO {self.parts} {partials_sql(rows, KEYS)}")
            con.execute("COMMIT")
        except BaseException:
            con.execute("ROLLBACK")
            raise
        self._aggregated, self._stale = max(top, self._aggregated), set()


def _moment(micros: int) -> dt.datetime:
    return dt.datetime(1970, 1, 1, tzinfo=dt.UTC) + dt.timedelta(microseconds=micros)
