"""Airflow's default metadata database, SQLite, made to bear K2's concurrent writers.

The scheduler, the DAG processor, the API server (for every task's state) and the CLI write the
one file. `CONNECT_ARGS` is what ``[database] sql_alchemy_connect_args`` (and its async twin)
name; `use_wal` lets readers and the writer proceed together instead of a commit waiting out
every reader. Two ways a writer failed with "database is locked":
- a lock held longer than sqlite3's default 5 s busy timeout, on two loaded cores;
- a transaction that read first and wrote later. Under WAL, a read transaction that another
  connection's commit has overtaken cannot become a write transaction, and SQLite fails it at
  once without consulting the busy timeout. Airflow's `session.begin_nested()` opens such
  transactions: Python's sqlite3 sends SAVEPOINT without a BEGIN, so SQLite starts a deferred
  one (seen: `airflow backfill create` while the scheduler ran; apache/airflow#66726).
  `ImmediateConnection` begins every transaction with BEGIN IMMEDIATE, which takes the write lock
  first and so waits its turn.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterable
from pathlib import Path
from typing import Any

# sqlite3's wait for a lock before "database is locked": longer than any one write K2 has seen
BUSY_TIMEOUT_S = 60.0
# the statements before which Python's sqlite3 opens a transaction itself, and SAVEPOINT
_OPENS_A_TRANSACTION = frozenset({"INSERT", "UPDATE", "DELETE", "REPLACE", "SAVEPOINT"})


class ImmediateCursor(sqlite3.Cursor):
    """Sends BEGIN IMMEDIATE before a statement that would open a transaction."""

    def execute(self, sql: str, parameters: Any = (), /) -> ImmediateCursor:
        self._begin_immediately(sql)
        return super().execute(sql, parameters)

    def executemany(self, sql: str, seq_of_parameters: Iterable[Any], /) -> ImmediateCursor:
        self._begin_immediately(sql)
        return super().executemany(sql, seq_of_parameters)

    def _begin_immediately(self, sql: str) -> None:
        conn = self.connection
        # isolation_level None is autocommit (SQLAlchemy's AUTOCOMMIT): no transaction to open
        if conn.isolation_level is None or conn.in_transaction:
            return
        words = sql.lstrip().split(None, 1)
        if words and words[0].upper() in _OPENS_A_TRANSACTION:
            super().execute("BEGIN IMMEDIATE")


class ImmediateConnection(sqlite3.Connection):
    """A sqlite3 connection whose every transaction starts with the write lock (see the module)."""

    def cursor(self, factory: type[sqlite3.Cursor] = ImmediateCursor) -> sqlite3.Cursor:  # type: ignore[override]
        return super().cursor(factory)


CONNECT_ARGS: dict[str, object] = {"timeout": BUSY_TIMEOUT_S, "factory": ImmediateConnection}
CONNECT_ARGS_PATH = f"{__name__}.CONNECT_ARGS"
# what names an Airflow process's metadata DB and how it connects, in its environment
DATABASE_KEYS = tuple(
    f"AIRFLOW__{section}__SQL_ALCHEMY_{key}"
    for section in ("DATABASE", "CORE")
    for key in ("CONN", "CONN_CMD", "CONN_SECRET", "CONNECT_ARGS", "CONNECT_ARGS_ASYNC")
)


def database_env(uri: str) -> dict[str, str]:
    """The environment that points an Airflow process at ``uri``; SQLite gets `CONNECT_ARGS` for
    its sync and async (aiosqlite) engines. A caller replaces every DATABASE_KEYS entry with it."""
    env = {"AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": uri}
    if database_file(uri):
        env["AIRFLOW__DATABASE__SQL_ALCHEMY_CONNECT_ARGS"] = CONNECT_ARGS_PATH
        env["AIRFLOW__DATABASE__SQL_ALCHEMY_CONNECT_ARGS_ASYNC"] = CONNECT_ARGS_PATH
    return env


def database_file(uri: str) -> Path | None:
    """The file of a `sqlite:////abs/path` URI, None for any other database."""
    if not uri.startswith("sqlite:///") or uri == "sqlite:///":
        return None
    return Path(uri.removeprefix("sqlite:///").split("?", 1)[0])


def use_wal(path: Path) -> str:
    """Switch the database to write-ahead logging (kept in the file); returns the journal mode."""
    with sqlite3.connect(path, timeout=BUSY_TIMEOUT_S) as conn:
        return conn.execute("PRAGMA journal_mode=WAL").fetchone()[0]
