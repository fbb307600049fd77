"""Airflow's default metadata database, SQLite, made to bear K2's concurrent writers.

The scheduler, the DAG processor, the API server (for every task's state) and the CLI write the
one file. Airflow leaves sqlite3's busy timeout at its default 5 s, and on two loaded cores a
writer held longer than that makes the next one fail with "database is locked" (seen:
`airflow backfill create` while the scheduler started). `CONNECT_ARGS` is what
``[database] sql_alchemy_connect_args`` names; `use_wal` lets readers and the writer proceed
together instead of a commit waiting out every reader.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path

# sqlite3's wait for a lock before "database is locked": longer than any one write K2 has seen
BUSY_TIMEOUT_S = 60.0
CONNECT_ARGS: dict[str, object] = {"timeout": BUSY_TIMEOUT_S}
CONNECT_ARGS_PATH = f"{__name__}.CONNECT_ARGS"
# what names an Airflow process's metadata DB and how it connects, in its environment
DATABASE_KEYS = tuple(
    f"AIRFLOW__{section}__SQL_ALCHEMY_{key}"
    for section in ("DATABASE", "CORE")
    for key in ("CONN", "CONN_CMD", "CONN_SECRET", "CONNECT_ARGS")
)


def database_env(uri: str) -> dict[str, str]:
    """The environment that points an Airflow process at ``uri``; SQLite gets the busy timeout.
    A caller replaces every DATABASE_KEYS entry with it."""
    env = {"AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": uri}
    if database_file(uri):
        env["AIRFLOW__DATABASE__SQL_ALCHEMY_CONNECT_ARGS"] = CONNECT_ARGS_PATH
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
