"""The state directory and the secrets in it are this user's only, and Airflow's admin password is
never printed into the API server's log (no Airflow service is started: the functions that create
the files are called directly, and Airflow's auth manager is initialised in-process)."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from k2.private import private_dir, restrict_file, write_private
from k2.settings import Settings


def mode(path: Path) -> int:
    return path.stat().st_mode & 0o777


def test_the_state_directory_is_created_0700_and_an_open_one_is_closed(tmp_path: Path) -> None:
    from k2.cli import ensure_home

    umask = os.umask(0o022)  # the usual one: new directories would be 0755
    try:
        fresh = Settings.from_env({}, home=tmp_path / "fresh" / ".k2")
        ensure_home(fresh)
    finally:
        os.umask(umask)
    assert mode(fresh.home) == 0o700
    opened = tmp_path / "old"
    opened.mkdir()
    opened.chmod(0o775)
    assert mode(private_dir(opened)) == 0o700


def test_secret_files_are_0600_even_over_a_leftover(tmp_path: Path) -> None:
    path = tmp_path / "airflow" / "passwords.json"
    path.parent.mkdir()
    leftover = path.with_name(".passwords.json.tmp")
    leftover.write_text("old")
    leftover.chmod(0o644)
    write_private(path, '{"admin": "x"}')
    assert mode(path) == 0o600 and json.loads(path.read_text()) == {"admin": "x"}
    assert mode(path.parent) == 0o700
    loose = tmp_path / "loose.json"
    loose.write_text("{}")
    loose.chmod(0o644)
    restrict_file(loose)
    assert mode(loose) == 0o600


@pytest.fixture
def airflow(tmp_path: Path):
    from k2.runtime.airflow import AirflowServices

    return AirflowServices(Settings.from_env({}, home=tmp_path / "k2"))


def test_the_airflow_password_and_secrets_files_are_private(airflow) -> None:
    env = airflow.environment()
    password = airflow.password()
    assert password and env["AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE"] == str(airflow.passwords_file)
    assert mode(airflow.passwords_file) == 0o600 and mode(airflow.home / "secrets.json") == 0o600
    assert mode(airflow.home) == 0o700
    assert airflow.ensure_password() == password  # generated once, kept


def test_a_password_file_written_by_airflow_earlier_is_restricted_and_kept(airflow) -> None:
    airflow.home.mkdir(parents=True)
    airflow.passwords_file.write_text(json.dumps({"admin": "from-airflow"}) + "\n")
    airflow.passwords_file.chmod(0o644)
    assert airflow.ensure_password() == "from-airflow"
    assert mode(airflow.passwords_file) == 0o600


@pytest.mark.filterwarnings("ignore:Using `httpx` with `starlette.testclient`")  # imported by Airflow's auth
def test_airflow_prints_no_password_once_k2_wrote_the_file(airflow, tmp_path: Path, monkeypatch, capsys) -> None:
    from airflow.api_fastapi.auth.managers.simple.simple_auth_manager import SimpleAuthManager

    env = airflow.environment()
    monkeypatch.setenv("AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS", env["AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS"])
    monkeypatch.setenv("AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE", str(airflow.passwords_file))
    SimpleAuthManager().init()
    assert airflow.password() not in capsys.readouterr().out
    assert json.loads(airflow.passwords_file.read_text()) == {"admin": airflow.password()}
    # the check itself: on a file K2 did not write, Airflow prints the password it generates
    monkeypatch.setenv("AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE", str(tmp_path / "generated.json"))
    SimpleAuthManager().init()
    generated = json.loads((tmp_path / "generated.json").read_text())["admin"]
    assert generated in capsys.readouterr().out
