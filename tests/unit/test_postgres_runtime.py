"""The PostgreSQL runtime's decisions that need no server: where the programs are, where the data
lives when K2 runs as root, and the URLs it hands out."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from k2.errors import K2Error
from k2.runtime.postgres import LocalPostgres, find_bin_dir
from k2.settings import Settings


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
