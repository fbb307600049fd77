"""The PostgreSQL runtime's decisions that need no server: where the programs are, where the data
lives when K2 runs as root, and the URLs it hands out."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from k2.errors import K2Error
from k2.runtime import procs
from k2.runtime.postgres import LocalPostgres, find_bin_dir
from k2.settings import Settings
from tests.helpers import free_port


def _fake_bin(tmp_path: Path) -> Path:
    bin_dir = tmp_path / "pg" / "bin"
    bin_dir.mkdir(parents=True)
    for name in ("initdb", "postgres"):
        (bin_dir / name).write_text("#!/bin/sh\n")
    return bin_dir


def test_a_configured_bin_dir_is_used_when_it_holds_the_server_programs(tmp_path: Path) -> None:
    bin_dir = _fake_bin(tmp_path)
    assert find_bin_dir(str(bin_dir)) == bin_dir


def test_a_configured_bin_dir_without_initdb_says_how_to_fix_it(tmp_path: Path) -> None:
    with pytest.raises(K2Error, match="K2_POSTGRES_BIN_DIR"):
        find_bin_dir(str(tmp_path))


def test_the_password_is_generated_once_into_a_private_file(tmp_path: Path) -> None:
    server = LocalPostgres(Settings.from_env({}, home=tmp_path, postgres_port=15432))
    first = server.password()
    assert server.password() == first and len(first) >= 32
    assert server.password_file.stat().st_mode & 0o777 == 0o600
    assert server.uri("catalog") == f"postgresql+psycopg2://k2:{first}@127.0.0.1:15432/catalog"


@pytest.mark.skipif(os.geteuid() != 0, reason="the data directory moves only for root")
def test_as_root_the_data_directory_is_outside_the_private_k2_home(tmp_path: Path) -> None:
    server = LocalPostgres(Settings.from_env({}, home=tmp_path))
    assert not server.data_dir.is_relative_to(tmp_path)
    assert server.password_file.is_relative_to(tmp_path)  # the secret stays in K2_HOME
    other = LocalPostgres(Settings.from_env({}, home=tmp_path / "other"))
    assert other.data_dir != server.data_dir  # one server per K2_HOME


def test_embedded_postgres_is_where_the_catalog_and_airflow_live_unless_they_are_set(tmp_path: Path) -> None:
    settings = Settings.from_env({}, home=tmp_path, postgres_embedded=True, postgres_port=15433)
    password = LocalPostgres(settings).password()  # the one the derived URLs carry
    assert settings.lake.catalog_uri == f"postgresql+psycopg2://k2:{password}@127.0.0.1:15433/catalog"
    assert settings.airflow.db_uri == f"postgresql+psycopg2://k2:{password}@127.0.0.1:15433/airflow"
    assert password in settings.secret_values()  # so redact() and every masked view hide it
    shown = " ".join(value for _, value, _, _ in settings.describe())
    assert password not in shown and "k2:****@127.0.0.1:15433/catalog" in shown
    # CeleryExecutor needs no URL of its own then
    Settings.from_env({}, home=tmp_path, postgres_embedded=True, airflow_executor="CeleryExecutor")

    explicit = Settings.from_env({}, home=tmp_path, postgres_embedded=True, catalog_uri="postgresql://u:p@db/x")
    assert explicit.lake.catalog_uri == "postgresql://u:p@db/x" and "/airflow" in explicit.airflow.db_uri
    default = Settings.from_env({}, home=tmp_path / "plain")
    assert default.lake.catalog_uri.startswith("sqlite:///") and default.airflow.db_uri.startswith("sqlite:///")
    assert not (tmp_path / "plain" / "postgres").exists()  # off: no password generated


def test_processes_generating_the_password_at_once_all_get_the_same_one(tmp_path: Path) -> None:
    from concurrent.futures import ThreadPoolExecutor

    from k2.runtime.postgres import superuser_password

    with ThreadPoolExecutor(8) as pool:
        values = set(pool.map(lambda _: superuser_password(tmp_path), range(32)))
    assert len(values) == 1 and (tmp_path / "postgres" / "password").read_text().strip() in values
    assert sorted(p.name for p in (tmp_path / "postgres").iterdir()) == ["password"]  # no temporary file left


def test_a_data_directory_older_than_k2_homes_password_is_told_from_one_made_with_it(tmp_path: Path) -> None:
    from k2.runtime.postgres import outlived_its_password

    data, password = tmp_path / "data", tmp_path / "password"
    data.mkdir()
    password.write_text("first")
    (data / "PG_VERSION").write_text("15\n")  # initdb after the password was made: its own
    os.utime(password, (1_000, 1_000))
    assert not outlived_its_password(data, password)
    os.utime(password, (2_000_000_000, 2_000_000_000))  # a password made after initdb: K2_HOME made anew
    assert outlived_its_password(data, password)
    assert not outlived_its_password(tmp_path / "none", password)  # no server yet: initdb makes one


def test_a_server_whose_command_line_reads_empty_mid_exec_is_waited_for_not_called_gone(tmp_path: Path) -> None:
    # while setpriv execs postgres, /proc/<pid>/cmdline reads empty for a moment: the start-up wait
    # must judge by the process being alive, or it reports a live server as "exited while starting"
    server = LocalPostgres(Settings.from_env({}, home=tmp_path, postgres_port=free_port()))
    stand_in = subprocess.Popen(["sleep", "60"])  # alive, its command line not naming the data dir
    try:
        server.pid_file.parent.mkdir(parents=True, exist_ok=True)
        procs.write_pid_file(server.pid_file, stand_in.pid)
        assert server.pid() is None  # what the reuse check makes of it
        with pytest.raises(K2Error, match="did not accept connections"):
            server._wait_ready(timeout_s=1.0)
        stand_in.kill()
        stand_in.wait()
        with pytest.raises(K2Error, match="exited while starting"):
            server._wait_ready(timeout_s=5.0)
    finally:
        stand_in.kill()
