"""Airflow's default SQLite metadata database under concurrent writers: a long busy timeout and
transactions that take the write lock first in every Airflow process, and write-ahead logging so a
reader never makes a commit fail."""

from __future__ import annotations

import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.exc import OperationalError
from sqlalchemy.orm import Session

from k2.runtime import airflow_sqlite
from k2.runtime.airflow import AirflowServices
from k2.settings import Settings

# what Airflow's own sync and async (aiosqlite) engines make of the settings K2 gives them
ENGINES_PROBE = """
import asyncio
from sqlalchemy import text
from airflow import settings

with settings.engine.connect() as conn:
    print(conn.execute(text("PRAGMA busy_timeout")).scalar(), type(conn.connection.dbapi_connection).__name__)

async def async_timeout():
    async with settings.async_engine.connect() as conn:
        timeout = (await conn.execute(text("PRAGMA busy_timeout"))).scalar()
    await settings.async_engine.dispose()  # inside the loop: the pool cannot close it after
    return timeout

print(asyncio.run(async_timeout()))
"""


def test_airflow_on_sqlite_waits_out_a_held_lock(tmp_path: Path) -> None:
    env = AirflowServices(Settings.from_env({}, home=tmp_path)).environment()
    assert env["AIRFLOW__DATABASE__SQL_ALCHEMY_CONNECT_ARGS"] == airflow_sqlite.CONNECT_ARGS_PATH
    assert env["AIRFLOW__DATABASE__SQL_ALCHEMY_CONNECT_ARGS_ASYNC"] == airflow_sqlite.CONNECT_ARGS_PATH
    # Airflow itself resolves the settings: its engines' connections wait 60 s, not sqlite3's 5 s
    out = subprocess.run(
        [sys.executable, "-c", ENGINES_PROBE], env=env, capture_output=True, text=True, check=True, timeout=120
    )
    sync_timeout, sync_class, async_timeout = out.stdout.split()[-3:]
    timeout_ms = str(int(airflow_sqlite.BUSY_TIMEOUT_S * 1000))
    assert (sync_timeout, sync_class, async_timeout) == (timeout_ms, "ImmediateConnection", timeout_ms)


def _dag_run_table(tmp_path: Path) -> Path:
    db = tmp_path / "airflow.db"
    with sqlite3.connect(db) as conn:
        conn.execute("CREATE TABLE dag_run (id INTEGER)")
    assert airflow_sqlite.use_wal(db) == "wal"
    return db


@pytest.mark.parametrize("connect_args", ["busy timeout alone", "K2's"])
def test_a_savepoint_that_read_first_still_writes_after_another_writer(tmp_path: Path, connect_args: str) -> None:
    """Airflow's backfill creation, in miniature: `begin_nested()`, a read, another process writes,
    then the insert. With a busy timeout alone the insert fails at once (SQLITE_BUSY_SNAPSHOT)."""
    db = _dag_run_table(tmp_path)
    args = {"timeout": 1.0} if connect_args == "busy timeout alone" else airflow_sqlite.CONNECT_ARGS
    engine = create_engine(f"sqlite:///{db}", connect_args=args)
    scheduler = sqlite3.connect(db, timeout=0)
    try:
        with Session(engine) as session:
            with session.begin_nested():
                assert session.execute(text("SELECT count(*) FROM dag_run")).scalar() == 0
                try:  # the scheduler's write; timeout 0, so it gives up where it would wait its turn
                    scheduler.execute("INSERT INTO dag_run VALUES (2)")
                    scheduler.commit()
                except sqlite3.OperationalError:
                    scheduler.rollback()
                if connect_args == "busy timeout alone":
                    with pytest.raises(OperationalError, match="database is locked"):
                        session.execute(text("INSERT INTO dag_run VALUES (1)"))
                    return
                session.execute(text("INSERT INTO dag_run VALUES (1)"))
            session.commit()
        with sqlite3.connect(db) as conn:  # the savepoint's write landed; the scheduler's waited for it
            assert conn.execute("SELECT id FROM dag_run").fetchall() == [(1,)]
    finally:
        scheduler.close()
        engine.dispose()


def test_autocommit_and_reads_open_no_transaction(tmp_path: Path) -> None:
    conn = sqlite3.connect(_dag_run_table(tmp_path), **airflow_sqlite.CONNECT_ARGS)  # type: ignore[arg-type]
    try:
        conn.execute("SELECT count(*) FROM dag_run").fetchone()
        assert not conn.in_transaction  # a read alone never holds the write lock
        conn.execute("INSERT INTO dag_run VALUES (1)")
        assert conn.in_transaction
        conn.commit()
        conn.isolation_level = None  # SQLAlchemy's AUTOCOMMIT
        conn.execute("INSERT INTO dag_run VALUES (2)")
        assert not conn.in_transaction
    finally:
        conn.close()


def test_other_databases_keep_their_own_connect_args(tmp_path: Path) -> None:
    pg = "postgresql+psycopg2://k2:pw@127.0.0.1:5432/airflow"
    env = AirflowServices(Settings.from_env({}, home=tmp_path, airflow_db_uri=pg)).environment()
    assert "AIRFLOW__DATABASE__SQL_ALCHEMY_CONNECT_ARGS" not in env
    assert airflow_sqlite.database_file(pg) is None
    assert airflow_sqlite.database_file("sqlite:////a/b.db?mode=rw") == Path("/a/b.db")


@pytest.mark.parametrize("wal", [False, True])
def test_with_write_ahead_logging_an_open_reader_does_not_fail_a_commit(tmp_path: Path, wal: bool) -> None:
    db = tmp_path / "airflow.db"
    with sqlite3.connect(db) as conn:
        conn.execute("CREATE TABLE dag_run (id INTEGER)")
    if wal:
        assert airflow_sqlite.use_wal(db) == "wal"
    reader = sqlite3.connect(db, isolation_level=None)
    reader.execute("BEGIN")
    reader.execute("SELECT count(*) FROM dag_run").fetchone()  # holds its read lock, as a polling API server
    writer = sqlite3.connect(db, timeout=0)
    try:
        writer.execute("INSERT INTO dag_run VALUES (1)")
        if wal:
            writer.commit()
            assert reader.execute("SELECT count(*) FROM dag_run").fetchone() == (0,)  # its own snapshot
        else:
            with pytest.raises(sqlite3.OperationalError, match="locked"):
                writer.commit()
    finally:
        reader.close()
        writer.close()
