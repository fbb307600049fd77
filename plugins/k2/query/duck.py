"""One in-process DuckDB database for k2.query's transient work (registered Arrow tables, temporary
tables), each use on a cursor of its own: a cursor costs 0.1 ms where a new database costs 13 ms on
an idle core, and a bars query opens half a dozen. What a cursor registers or creates is its own and
goes with it."""

from __future__ import annotations

import threading

_database = None
_lock = threading.Lock()


def cursor():  # -> duckdb.DuckDBPyConnection
    """A connection of its own (close it, or use it as a context manager), in UTC."""
    import duckdb

    global _database
    with _lock:
        if _database is None:
            _database = duckdb.connect()
        con = _database.cursor()
    con.execute("SET TimeZone = 'UTC'")
    return con
