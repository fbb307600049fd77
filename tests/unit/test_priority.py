"""The batch's lower priority holds across sessions: its process and its session's scheduling group."""

from __future__ import annotations

import errno
import os
import sys
from pathlib import Path

import psutil
import pytest

from k2.runtime import priority, procs


def test_a_spawned_batch_runs_niced_in_a_session_group_of_its_own(tmp_path: Path) -> None:
    mine = os.getpriority(os.PRIO_PROCESS, 0)
    pid = procs.spawn(
        [sys.executable, "-c", "import time; time.sleep(60)"],
        pid_file=tmp_path / "child.pid",
        log_file=tmp_path / "child.log",
        nice=7,
    )
    try:
        assert os.getsid(pid) == pid
        assert os.getpriority(os.PRIO_PROCESS, pid) == min(19, mine + 7)
        group = priority.group_nice(pid)
        if Path("/proc/sys/kernel/sched_autogroup_enabled").exists():
            assert group == 7, "the child's session group keeps the default niceness: nice alone is ignored"
        # the test's own session group is untouched
        assert priority.group_nice(os.getpid()) in (None, 0)
    finally:
        procs.stop(tmp_path / "child.pid", timeout_s=5)
    assert not psutil.pid_exists(pid) or psutil.Process(pid).status() == psutil.STATUS_ZOMBIE


def test_a_child_in_the_callers_session_leaves_the_callers_group_alone(tmp_path: Path, monkeypatch) -> None:
    written: list[int] = []
    monkeypatch.setattr(priority, "set_group_nice", lambda nice, autogroup=None: written.append(nice) or True)
    monkeypatch.setattr(priority.os, "nice", lambda n: 0)
    monkeypatch.setattr(priority.os, "getsid", lambda pid: 1)
    monkeypatch.setattr(priority.os, "getpid", lambda: 2)
    priority.lower_priority(10)()
    assert written == []


def test_the_kernels_rate_limit_is_waited_out(tmp_path: Path, monkeypatch) -> None:
    target = tmp_path / "autogroup"
    calls = []
    real_write = Path.write_text

    def write_text(self: Path, text: str, *args, **kwargs) -> int:
        calls.append(text)
        if len(calls) < 3:
            raise OSError(errno.EAGAIN, "rate limited")
        return real_write(self, text)

    monkeypatch.setattr(Path, "write_text", write_text)
    assert priority.set_group_nice(10, target) is True
    assert target.read_text() == "10" and len(calls) == 3


@pytest.mark.parametrize("exc", [FileNotFoundError(), PermissionError(errno.EPERM, "no")])
def test_without_autogroups_the_nice_alone_applies(tmp_path: Path, monkeypatch, exc: OSError) -> None:
    def fail(self: Path, text: str, *args, **kwargs) -> int:
        raise exc

    monkeypatch.setattr(Path, "write_text", fail)
    assert priority.set_group_nice(10, tmp_path / "autogroup") is False
