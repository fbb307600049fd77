"""Which running process is the state directory's Spark Connect server, on real processes standing in
for it (a JVM start is not needed to tell them apart): a server left on an old port is stopped
before a new one starts, and `k2 down` stops it; another state directory's server is left alone."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest

from k2.runtime import procs
from k2.runtime.spark_connect import HOME_CONF, PORT_CONF, SERVER_CLASS, LocalSparkConnectServer
from k2.settings import Settings
from tests.helpers import wait_for

PORT = 15802


@pytest.fixture
def stand_ins() -> Iterator[list[subprocess.Popen]]:
    started: list[subprocess.Popen] = []
    yield started
    for proc in started:
        proc.kill()
        proc.wait(10)


def stand_in(started: list[subprocess.Popen], home: Path, port: int) -> subprocess.Popen:
    """A process whose command line is a Spark Connect server's for ``home`` on ``port``."""
    confs = ["--conf", f"{PORT_CONF}={port}", "--conf", f"{HOME_CONF}={home}"]
    proc = subprocess.Popen(
        [sys.executable, "-c", "import time; time.sleep(600)", "--class", SERVER_CLASS, *confs],
        start_new_session=True,  # a process group of its own, as procs.spawn starts the server
    )
    started.append(proc)
    # as procs.spawn does: Popen returns before Linux lays out the new command line, and until then
    # the stand-in reads as a stranger (a CI run on two busy cores lost that race, 2026-12-07)
    procs.wait_for_program(proc.pid)
    return proc


def server(home: Path, monkeypatch: pytest.MonkeyPatch, spawned: list[int]) -> LocalSparkConnectServer:
    settings = Settings.from_env({}, home=home, spark_connect_port=PORT)
    connect = LocalSparkConnectServer(settings)
    connect.pid_file.parent.mkdir(parents=True, exist_ok=True)
    monkeypatch.setattr(connect, "_spawn", lambda: spawned.append(1))  # no JVM: what is stopped is under test
    return connect


def gone(proc: subprocess.Popen) -> bool:
    return proc.poll() is not None


def test_this_directorys_server_on_another_port_is_stopped_before_a_new_one_starts(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, stand_ins: list[subprocess.Popen]
) -> None:
    spawned: list[int] = []
    connect = server(tmp_path, monkeypatch, spawned)
    old = stand_in(stand_ins, tmp_path, PORT + 1)  # started before K2_SPARK_CONNECT_PORT changed
    procs.write_pid_file(connect.pid_file, old.pid)
    assert not connect.status().running  # not on the configured port
    connect.start_in_background()
    wait_for(lambda: gone(old), 30, "the server on the old port to stop")
    assert spawned == [1]


def test_down_stops_this_directorys_server_on_another_port(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, stand_ins: list[subprocess.Popen]
) -> None:
    connect = server(tmp_path, monkeypatch, [])
    old = stand_in(stand_ins, tmp_path, PORT + 1)
    procs.write_pid_file(connect.pid_file, old.pid)
    assert connect.stop()
    wait_for(lambda: gone(old), 30, "the server on the old port to stop")


def test_another_directorys_server_is_left_alone(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, stand_ins: list[subprocess.Popen]
) -> None:
    spawned: list[int] = []
    connect = server(tmp_path / "mine", monkeypatch, spawned)
    theirs = stand_in(stand_ins, tmp_path / "theirs", PORT + 1)
    procs.write_pid_file(connect.pid_file, theirs.pid)  # a stale pid file whose pid now is another server
    connect.start_in_background()
    assert spawned == [1] and not connect.stop()
    assert psutil.Process(theirs.pid).is_running() and not gone(theirs)
