"""Airflow's default SQLite metadata database under concurrent writers: a long busy timeout in
every Airflow process, and write-ahead logging so a reader never makes a commit fail."""

from __future__ import annotations

import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from k2.runtime import airflow_sqlite
from k2.runtime.airflow import AirflowServices
from k2.settings import Settings

BUSY_TIMEOUT_PROBE = (
    "from sqlalchemy import text; from airflow import settings; "
    "print(settings.engine.connect().execute(text('PRAGMA busy_timeout')).scalar())"
)


def test_airflow_on_sqlite_waits_out_a_held_lock(tmp_path: Path) -> None:
    env = AirflowServices(Settings.from_env({}, home=tmp_path)).environment()
    assert env["AIRFLOW__DATABASE__SQL_ALCHEMY_CONNECT_ARGS"] == airflow_sqlite.CONNECT_ARGS_PATH
    # Airflow itself resolves the setting: its engine's connections wait 60 s, not sqlite3's 5 s
    out = subprocess.run(
        [sys.executable, "-c", BUSY_TIMEOUT_PROBE], env=env, capture_output=True, text=True, check=True, timeout=120
    )
    assert int(out.stdout.split()[-1]) == airflow_sqlite.BUSY_TIMEOUT_S * 1000


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
