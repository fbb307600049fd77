"""Housekeeping on files laid out as K2 and Great Expectations write them."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

from k2 import housekeeping
from k2.errors import K2Error
from k2.runtime import airflow_sqlite
from k2.settings import Settings

OLD = time.time() - 40 * housekeeping.DAY_S


def _file(path: Path, size: int = 10, mtime: float | None = None) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"x" * size)
    if mtime is not None:
        os.utime(path, (mtime, mtime))
    return path


def test_a_log_over_its_limit_is_rotated_in_place_and_the_oldest_copy_dropped(tmp_path: Path) -> None:
    settings = Settings.from_env({}, home=tmp_path, maintenance_log_max_mb=1, maintenance_log_keep=2)
    big = _file(settings.logs_dir / "streams" / "binance.log", 2 * 1024 * 1024)
    _file(big.with_name("binance.log.1"), 5)
    _file(big.with_name("binance.log.2"), 7)
    small = _file(settings.logs_dir / "feeds" / "kraken.log", 100)
    with big.open("ab") as writer:  # a writer holding the file open, as the stream's process does
        report = housekeeping.rotate_logs(settings)
        writer.write(b"next line\n")
        writer.flush()
    assert report.rotated == ["streams/binance.log"]
    assert big.read_bytes() == b"next line\n"  # the writer goes on at the start of the emptied file
    assert big.with_name("binance.log.1").stat().st_size == 2 * 1024 * 1024
    assert big.with_name("binance.log.2").stat().st_size == 5  # was .1; the old .2 is gone
    assert not big.with_name("binance.log.3").exists()
    assert small.stat().st_size == 100


def test_old_task_logs_are_deleted_and_recent_ones_kept(tmp_path: Path) -> None:
    settings = Settings.from_env({}, home=tmp_path, maintenance_log_retention_days=14)
    tasks = settings.logs_dir / "airflow" / "tasks"
    old = _file(tasks / "dag_id=k2_monitoring" / "run_id=a" / "task_id=measure" / "attempt=1.log", 30, OLD)
    new = _file(tasks / "dag_id=k2_monitoring" / "run_id=b" / "task_id=measure" / "attempt=1.log", 30)
    report = housekeeping.rotate_logs(settings)
    assert (report.removed_files, report.removed_bytes) == (1, 30)
    assert not old.exists() and not old.parent.exists() and new.exists()


def test_old_quality_results_and_their_pages_are_deleted(tmp_path: Path, monkeypatch) -> None:
    settings = Settings.from_env({}, home=tmp_path, maintenance_quality_retention_days=30)
    gx = settings.home / "quality" / "gx" / "uncommitted"
    old = _file(gx / "validations" / "silver.binance" / "2026-10-01" / "20261001T100000Z" / "b.json", 50, OLD)
    page = _file(gx / "data_docs" / "local_site" / "validations" / "silver.binance" / "2026-10-01" / "b.html", 70, OLD)
    new = _file(gx / "validations" / "silver.binance" / "2026-11-30" / "20261130T100000Z" / "b.json", 50)
    rebuilt = []
    monkeypatch.setattr("k2.quality.gate.rebuild_data_docs", rebuilt.append)
    report = housekeeping.prune_quality_results(settings)
    assert (report.removed_files, report.removed_bytes) == (2, 120)
    assert not old.exists() and not page.exists() and new.exists()
    assert rebuilt == [settings.home / "quality"]  # the index then lists only what is left


def test_db_clean_gets_the_deployments_db_where_airflow_blocked_it(tmp_path: Path, monkeypatch) -> None:
    # what Airflow 3's task supervisor leaves a task (block_orm_access)
    monkeypatch.setenv("AIRFLOW__DATABASE__SQL_ALCHEMY_CONN", "airflow-db-not-allowed:///")
    monkeypatch.setenv("AIRFLOW__CORE__SQL_ALCHEMY_CONN", "airflow-db-not-allowed:///")
    uri = "postgresql+psycopg2://airflow@127.0.0.1:5432/airflow"
    settings = Settings.from_env({}, home=tmp_path, airflow_db_uri=uri)
    command, env, before = housekeeping.airflow_db_clean_command(settings)
    assert command[1:3] == ["db", "clean"] and before in command
    assert env["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"] == uri and "AIRFLOW__CORE__SQL_ALCHEMY_CONN" not in env
    assert uri not in " ".join(command)  # a password in the URI stays off the command line
    tables = command[command.index("--tables") + 1].split(",")
    assert tables == list(housekeeping.AIRFLOW_HISTORY_TABLES)


def test_db_clean_tables_are_airflows_history_tables_and_never_the_dags() -> None:
    from airflow.utils.db_cleanup import config_dict

    assert set(housekeeping.AIRFLOW_HISTORY_TABLES) <= set(config_dict)  # a renamed table fails here
    assert {"dag", "dag_version", "partitioned_asset_key_log"}.isdisjoint(housekeeping.AIRFLOW_HISTORY_TABLES)


def test_db_clean_without_a_known_db_names_the_setting(tmp_path: Path) -> None:
    settings = Settings.from_env({}, home=tmp_path)  # no Airflow of K2's own here
    with pytest.raises(K2Error) as missing:
        housekeeping.airflow_db_clean_command(settings)
    assert "K2_AIRFLOW_DB_URI" in missing.value.fix


def test_db_clean_under_k2s_own_postgresql_gets_that_database(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("AIRFLOW__DATABASE__SQL_ALCHEMY_CONN", "airflow-db-not-allowed:///")
    settings = Settings.from_env({}, home=tmp_path, postgres_embedded=True, postgres_port=15435)
    command, env, _ = housekeeping.airflow_db_clean_command(settings)  # derived, and no SQLite file: still known
    assert env["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"] == settings.airflow.db_uri
    assert settings.airflow.db_uri.endswith("@127.0.0.1:15435/airflow")
    password = (tmp_path / "postgres" / "password").read_text().strip()
    assert password not in " ".join(command)


def test_db_clean_on_sqlite_waits_out_a_held_lock_like_every_airflow_process(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("AIRFLOW__DATABASE__SQL_ALCHEMY_CONN", "airflow-db-not-allowed:///")
    monkeypatch.setenv("AIRFLOW__DATABASE__SQL_ALCHEMY_CONNECT_ARGS", "elsewhere.ARGS")
    uri = f"sqlite:///{tmp_path / 'airflow.db'}"
    _, env, _ = housekeeping.airflow_db_clean_command(Settings.from_env({}, home=tmp_path, airflow_db_uri=uri))
    assert env["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"] == uri
    assert env["AIRFLOW__DATABASE__SQL_ALCHEMY_CONNECT_ARGS"] == airflow_sqlite.CONNECT_ARGS_PATH
    postgres = Settings.from_env({}, home=tmp_path, airflow_db_uri="postgresql+psycopg2://airflow@127.0.0.1/airflow")
    _, env, _ = housekeeping.airflow_db_clean_command(postgres)
    assert "AIRFLOW__DATABASE__SQL_ALCHEMY_CONNECT_ARGS" not in env  # sqlite3's arguments are not psycopg2's
