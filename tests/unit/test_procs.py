"""Stopping a service that waits for its children: the children's process groups go first; a pid
file whose pid now names another process is stale."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil

from k2.runtime import procs

# a service that, like an Airflow scheduler with a running task, starts a child in a process group
# of its own and, on SIGTERM, waits for that child before it exits
SERVICE = """
import signal, subprocess, sys, time
child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)"], process_group=0)
open(sys.argv[1], "w").write(str(child.pid))
def on_term(*_):
    child.wait()
    open(sys.argv[1] + ".clean", "w").write("exited after its child")
    sys.exit(0)
signal.signal(signal.SIGTERM, on_term)
time.sleep(120)
"""


def wait_for(condition, timeout_s: float = 20.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.05)


def test_stop_groups_ends_the_childrens_groups_and_leaves_the_service(tmp_path: Path) -> None:
    child_file = tmp_path / "child.pid"
    pid = procs.spawn(
        [sys.executable, "-c", SERVICE, str(child_file)], pid_file=tmp_path / "svc.pid", log_file=tmp_path / "svc.log"
    )
    try:
        wait_for(lambda: child_file.exists() and child_file.read_text())
        child = psutil.Process(int(child_file.read_text()))
        procs.stop_groups(tmp_path / "svc.pid", timeout_s=10)
        assert not procs._alive(child)
        assert procs.running_pid(tmp_path / "svc.pid") == pid  # the service itself still runs
        assert procs.stop(tmp_path / "svc.pid", timeout_s=30) is True
        # it exited on its own, not killed at the timeout: the child it waits for was gone
        assert (tmp_path / "child.pid.clean").read_text() == "exited after its child"
    finally:
        procs.stop(tmp_path / "svc.pid", timeout_s=2)


def test_stop_groups_of_a_process_that_is_not_running_does_nothing(tmp_path: Path) -> None:
    procs.stop_groups(tmp_path / "missing.pid", timeout_s=1)


def test_a_group_whose_leader_is_a_zombie_is_not_alive() -> None:
    # a supervisor check launches the stream and exits; until init reaps the launcher, it is a zombie
    # that `killpg(pgid, 0)` still finds

    live = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"], start_new_session=True)
    done = subprocess.Popen([sys.executable, "-c", "pass"], start_new_session=True)
    try:
        wait_for(lambda: psutil.Process(done.pid).status() == psutil.STATUS_ZOMBIE)  # exited, not reaped
        assert procs.group_alive(live.pid)
        assert not procs.group_alive(done.pid)
        assert not procs.group_alive(None)
    finally:
        live.kill()
        live.wait()
        done.wait()
    assert not procs.group_alive(live.pid)


def test_a_pid_file_older_than_its_process_is_stale_and_stopping_it_signals_nobody(tmp_path: Path) -> None:
    # after a reboot or a container restart the file's pid names whatever process got it since
    stranger = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"], start_new_session=True)
    try:
        pid_file = tmp_path / "svc.pid"
        pid_file.write_text(str(stranger.pid))
        assert procs.running_pid(pid_file) == stranger.pid  # written after the process started: its own
        written_before = psutil.Process(stranger.pid).create_time() - 3600
        os.utime(pid_file, (written_before, written_before))
        assert procs.running_pid(pid_file) is None
        assert procs.stop(pid_file, timeout_s=2) is False
        assert stranger.poll() is None and not pid_file.exists()  # left running; the stale file gone
    finally:
        stranger.kill()
        stranger.wait()


def test_a_clock_jump_does_not_make_a_live_service_a_stranger(tmp_path: Path) -> None:
    # after a host suspend and resume psutil's create_time moves past the pid file's mtime; the start
    # ticks spawn() records still name the service, so `k2 down` stops it rather than calling it gone
    pid_file = tmp_path / "svc.pid"
    sleeper = [sys.executable, "-c", "import time; time.sleep(60)"]
    pid = procs.spawn(sleeper, pid_file=pid_file, log_file=tmp_path / "svc.log")
    try:
        written_before = psutil.Process(pid).create_time() - 3600
        os.utime(pid_file, (written_before, written_before))
        assert procs.running_pid(pid_file) == pid
        assert procs.stop(pid_file, timeout_s=5) is True
        wait_for(lambda: not psutil.pid_exists(pid) or psutil.Process(pid).status() == psutil.STATUS_ZOMBIE)
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)


def test_a_pid_file_whose_start_ticks_differ_names_a_stranger(tmp_path: Path) -> None:
    # the pid was reused: same number, another process (its start ticks are not the recorded ones)
    stranger = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"], start_new_session=True)
    try:
        pid_file = tmp_path / "svc.pid"
        procs.write_pid_file(pid_file, stranger.pid)
        assert procs.running_pid(pid_file) == stranger.pid
        ticks = procs.start_ticks(stranger.pid)
        assert ticks is not None
        pid_file.write_text(f"{stranger.pid}\n{ticks - 100}\n")
        assert procs.running_pid(pid_file) is None
        assert procs.stop(pid_file, timeout_s=2) is False
        assert stranger.poll() is None and not pid_file.exists()
    finally:
        stranger.kill()
        stranger.wait()


def test_a_pid_is_owned_only_by_the_process_whose_command_line_names_it(tmp_path: Path) -> None:
    # a pid file names a live process started after it was written, but another program or another
    # state directory's: not this service's, whatever the pid
    state = tmp_path / "home"
    pid_file = tmp_path / "svc.pid"
    sleeper = [sys.executable, "-c", "import time, sys; time.sleep(60)", str(state)]
    # spawn returns once the program's command line is readable (it is empty for a moment after exec)
    pid = procs.spawn(sleeper, pid_file=pid_file, log_file=tmp_path / "svc.log")
    try:
        assert procs.owned_pid(pid_file, "time.sleep", str(state)) == pid
        assert procs.owned_pid(pid_file, "time.sleep", str(tmp_path / "other-home")) is None
        assert procs.owned_pid(pid_file, "SparkConnectServer", str(state)) is None
    finally:
        os.kill(pid, signal.SIGKILL)
        wait_for(lambda: not psutil.pid_exists(pid) or psutil.Process(pid).status() == psutil.STATUS_ZOMBIE)
