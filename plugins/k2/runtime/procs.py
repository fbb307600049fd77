"""Detached background processes with pid files: how `k2 up` runs Airflow and the feeds."""

from __future__ import annotations

import contextlib
import errno
import os
import signal
import socket
import subprocess
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TypeVar

import psutil

from k2.errors import K2Error
from k2.runtime.priority import lower_priority


def require_free_port(host: str, port: int, setting: str) -> None:
    """Fail with the cause and the fix when ``host:port`` cannot be bound (``setting`` moves it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError as exc:
            if exc.errno == errno.EADDRINUSE:
                raise K2Error(
                    f"port {host}:{port} is already in use by another process",
                    f"stop that process (`ss -ltnp | grep :{port}`) or choose another port with {setting}.",
                ) from exc
            raise K2Error(
                f"cannot bind {host}:{port}: {exc.strerror}", "use an address of this machine (default 127.0.0.1)."
            ) from exc


def log_tail(*paths: Path, lines: int = 20) -> str:
    """The last ``lines`` lines of these logs, for an error that says why a server did not start."""
    tail: list[str] = []
    for path in paths:
        if path.exists():
            tail += path.read_text(errors="replace").splitlines()[-lines:]
    return "\n".join(tail[-lines:]) or "(no log output)"


# for pid files without start ticks: psutil derives a creation time from the boot time, in whole seconds
PID_CLOCK_SLACK_S = 2.0


def spawn(cmd: list[str], *, pid_file: Path, log_file: Path, env: dict[str, str] | None = None, nice: int = 0) -> int:
    """Start ``cmd`` in its own session (it outlives the caller), ``nice`` steps below the caller's
    priority (k2.runtime.priority); returns its pid."""
    log_file.parent.mkdir(parents=True, exist_ok=True)
    pid_file.parent.mkdir(parents=True, exist_ok=True)
    with log_file.open("ab") as out:
        proc = subprocess.Popen(
            cmd,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
            preexec_fn=lower_priority(nice) if nice else None,
        )
    write_pid_file(pid_file, proc.pid)
    wait_for_program(proc.pid)
    return proc.pid


def wait_for_program(pid: int, timeout_s: float = 10.0) -> None:
    """Until ``pid`` shows its new program's command line. Popen returns once exec closed the
    child's close-on-exec pipe, but Linux lays out the new command line a moment later: until then
    /proc/<pid>/cmdline is empty, and `owned_pid` would call the service a stranger. Returns at
    ``timeout_s`` or when the process is gone: its caller's own checks say what went wrong."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            if psutil.Process(pid).cmdline():
                return
        except psutil.Error:
            return
        time.sleep(0.001)


def write_pid_file(pid_file: Path, pid: int) -> None:
    """The pid on the first line (what `kill $(head -1 FILE)` needs), then the process's start time in
    clock ticks since boot: with the pid, an identity a clock jump cannot move, and that a reused pid
    (after a reboot or a container restart) would have to match to the tick."""
    ticks = start_ticks(pid)
    pid_file.write_text(f"{pid}\n{ticks}\n" if ticks is not None else f"{pid}\n")


def start_ticks(pid: int) -> int | None:
    """Field 22 of /proc/<pid>/stat (after the parenthesised command name, which may hold spaces);
    None off Linux or once the process is gone."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
        return int(stat.rsplit(")", 1)[1].split()[19])
    except (OSError, IndexError, ValueError):
        return None


def running_pid(pid_file: Path) -> int | None:
    """The pid in ``pid_file`` if that process is alive (zombies count as gone) and is the one the
    file was written for. A pid file outlives a reboot or a container restart, whose processes
    reuse low pids: stopping "its" process would then signal a stranger's whole session.

    Identity is the start ticks the file records. Wall-clock times cannot decide it: psutil's
    ``create_time`` is boot time + ticks, and a suspended and resumed host (VM pause, laptop sleep)
    moves the boot time forward, so every long-running process would look newer than its own file
    (`k2 down` once left a whole stack running that way). Only files without ticks (written by an
    older K2) fall back to that comparison."""
    try:
        lines = pid_file.read_text().split()
        pid = int(lines[0])
        proc = psutil.Process(pid)
        if len(lines) > 1:
            if start_ticks(pid) != int(lines[1]):
                return None
        elif proc.create_time() > pid_file.stat().st_mtime + PID_CLOCK_SLACK_S:
            return None
        return pid if proc.status() != psutil.STATUS_ZOMBIE else None
    except (OSError, ValueError, IndexError, psutil.Error):
        return None


def owned_pid(pid_file: Path, *markers: str) -> int | None:
    """``running_pid``, if that process's command line holds every one of ``markers`` (its program,
    its state directory): a pid the file names may since belong to another process."""
    pid = running_pid(pid_file)
    if pid is None:
        return None
    with contextlib.suppress(psutil.Error):
        if all(marker in " ".join(psutil.Process(pid).cmdline()) for marker in markers):
            return pid
    return None


def stop(pid_file: Path, timeout_s: float = 30.0) -> bool:
    """SIGTERM the process group, SIGKILL it after ``timeout_s``, then whatever else still runs in the
    process's session (e.g. Airflow task workers and their spark-submit, which make their own process
    groups); False if nothing ran."""
    pid = running_pid(pid_file)
    if pid is None:
        pid_file.unlink(missing_ok=True)
        return False
    session = _session_of(pid)
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout_s
    while running_pid(pid_file) and time.monotonic() < deadline:
        time.sleep(0.2)
    if running_pid(pid_file):
        with contextlib.suppress(ProcessLookupError):
            os.killpg(pid, signal.SIGKILL)
    if session == pid:  # spawn() made it a session leader: its session is ours to clean up
        _stop_session(session, timeout_s)
    pid_file.unlink(missing_ok=True)
    return True


T = TypeVar("T")


def concurrently(calls: list[Callable[[], T]]) -> list[T]:
    """Each call's result, in order, the calls run at once: stopping N processes takes as long as
    the slowest, not the sum (each waits out its own clean shutdown)."""
    if len(calls) <= 1:
        return [call() for call in calls]
    with ThreadPoolExecutor(max_workers=len(calls)) as pool:
        return list(pool.map(lambda call: call(), calls))


def stop_all(pid_files: list[Path], timeout_s: float = 30.0) -> list[bool]:
    """``stop`` for each pid file, at once."""
    return concurrently([lambda f=f: stop(f, timeout_s) for f in pid_files])


def _session_of(pid: int) -> int | None:
    try:
        return os.getsid(pid)
    except OSError:
        return None


def _session_members(session: int) -> list[psutil.Process]:
    members = []
    for proc in psutil.process_iter():
        with contextlib.suppress(psutil.Error, OSError):
            if proc.pid != os.getpid() and os.getsid(proc.pid) == session and proc.status() != psutil.STATUS_ZOMBIE:
                members.append(proc)
    return members


def stop_groups(pid_file: Path, timeout_s: float = 30.0) -> None:
    """SIGTERM the process groups a running process started in its session (e.g. an Airflow
    scheduler's or Celery worker's running tasks) and wait for them, leaving the process itself."""
    pid = running_pid(pid_file)
    if pid is None or _session_of(pid) != pid:
        return
    leaders = []
    for proc in _session_members(pid):
        with contextlib.suppress(psutil.Error, OSError):
            if proc.pid != pid and os.getpgid(proc.pid) == proc.pid:
                os.killpg(proc.pid, signal.SIGTERM)
                leaders.append(proc)
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline and any(_alive(proc) for proc in leaders):
        time.sleep(0.2)


def group_alive(pgid: int | None) -> bool:
    """Whether a process of group ``pgid`` still runs. Zombies do not count: a group launched by a
    process that has exited since (a supervisor check) is reaped by init, not by us, and
    ``killpg(pgid, 0)`` succeeds on a zombie leader until then."""
    if pgid is None:
        return False
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    for proc in psutil.process_iter():
        with contextlib.suppress(psutil.Error, OSError):
            if os.getpgid(proc.pid) == pgid and _alive(proc):
                return True
    return False


def _alive(proc: psutil.Process) -> bool:
    """Running and not a zombie (its parent, not us, reaps it)."""
    try:
        return proc.status() != psutil.STATUS_ZOMBIE
    except psutil.Error:
        return False


def _stop_session(session: int, timeout_s: float) -> None:
    members = _session_members(session)
    for proc in members:
        with contextlib.suppress(psutil.Error):
            proc.terminate()
    _, alive = psutil.wait_procs(members, timeout=timeout_s)
    for proc in alive:
        with contextlib.suppress(psutil.Error):
            proc.kill()
