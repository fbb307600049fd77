"""Where a Bronze stream keeps its state, and the small JSON files Airflow reads without Spark.

``$K2_HOME/streams/<exchange>/``:
  ``instance.lock``     held (flock) by the running job for its whole life: one instance per checkpoint
  ``status.json``       the job's own view: state, pids, query id, last error (written by the job)
  ``progress.json``     the last completed micro-batch (written by the listener, k2.streams.listener)
  ``progress.jsonl``    recent batches, newest last (bounded)
  ``idle.json``         when the query last reported "no new data" (proof of life while idle)
  ``supervisor.json``   restart history and back-off (written by the supervisor)
  ``lease``             renewed by the supervisor; the job stops itself when it expires (DAG paused)
  ``stop``              an explicit stop request (``k2 stream stop``)
``$K2_HOME/checkpoints/<exchange>/`` is the Spark checkpoint, ``$K2_HOME/logs/streams/`` the logs.
Readers go through k2.streams.control: with the catalog on PostgreSQL, status, progress, idle,
supervisor, lease and stop are rows in its database instead, and only the lock, the listener's own
files (copied there by the driver) and the logs stay on the host.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import struct
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from k2.settings import Settings

# progress.jsonl is cut back to the last PROGRESS_HISTORY records once it outgrows PROGRESS_LOG_MAX_BYTES
PROGRESS_HISTORY = 500
PROGRESS_LOG_MAX_BYTES = 2_000_000


@dataclass(frozen=True)
class StreamPaths:
    exchange: str
    root: Path
    checkpoint: str  # a local path, or an s3a:// location (K2_STREAM_CHECKPOINTS)
    log_file: Path

    @classmethod
    def of(cls, settings: Settings, exchange: str) -> StreamPaths:
        remote = settings.streams.checkpoints.rstrip("/")
        return cls(
            exchange,
            settings.home / "streams" / exchange,
            f"{remote}/{exchange}" if remote else str(settings.checkpoints_dir / exchange),
            settings.logs_dir / "streams" / f"bronze-{exchange}.log",
        )

    @property
    def local_checkpoint(self) -> Path | None:
        """The checkpoint's directory when it is on this host's file system."""
        return None if "://" in self.checkpoint else Path(self.checkpoint)

    @property
    def lock(self) -> Path:
        return self.root / "instance.lock"

    @property
    def status(self) -> Path:
        return self.root / "status.json"

    @property
    def progress(self) -> Path:
        return self.root / "progress.json"

    @property
    def progress_log(self) -> Path:
        return self.root / "progress.jsonl"

    @property
    def idle(self) -> Path:
        return self.root / "idle.json"

    @property
    def supervisor(self) -> Path:
        return self.root / "supervisor.json"

    @property
    def lease(self) -> Path:
        return self.root / "lease"

    @property
    def stop_request(self) -> Path:
        return self.root / "stop"

    def ensure(self) -> StreamPaths:
        local = [self.local_checkpoint.parent] if self.local_checkpoint else []
        for directory in (self.root, *local, self.log_file.parent):
            directory.mkdir(parents=True, exist_ok=True)
        return self


def write_json(path: Path, data: dict[str, Any]) -> None:
    """Atomic replace, so a reader never sees half a file."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(data, default=str))
    tmp.replace(path)


def read_json(path: Path) -> dict[str, Any] | None:
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        return None
    except ValueError:
        return None  # a torn or foreign file counts as absent; writers always replace atomically


def recent_progress(paths: StreamPaths, limit: int = 100) -> list[dict[str, Any]]:
    try:
        lines = paths.progress_log.read_text().splitlines()[-limit:]
    except FileNotFoundError:
        return []
    out = []
    for line in lines:
        with contextlib.suppress(ValueError):
            out.append(json.loads(line))
    return out


class InstanceLock:
    """An exclusive POSIX record lock on the stream's lock file, held for the life of the job.

    The kernel drops it when the process dies, however it dies, so a crash never leaves a stale
    lock and nobody has to guess whether a pid file still tells the truth. Others probe it with
    F_GETLK, which reports the holder's pid without ever taking the lock (a probe that took it,
    even briefly, could make a starting job believe it had a twin)."""

    _FLOCK = "hhqqi4x"  # struct flock on Linux x86-64/arm64: type, whence, start, len, pid

    def __init__(self, path: Path) -> None:
        self.path = path
        self._fd: int | None = None

    def acquire(self) -> bool:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.lockf(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            os.close(fd)
            return False
        self._fd = fd
        return True

    def release(self) -> None:
        if self._fd is not None:
            fcntl.lockf(self._fd, fcntl.LOCK_UN)
            os.close(self._fd)
            self._fd = None

    def holder_pid(self) -> int | None:
        """Pid of the process holding the lock, or None when nobody holds it."""
        if self._fd is not None:
            return os.getpid()
        try:
            fd = os.open(self.path, os.O_RDONLY)
        except FileNotFoundError:
            return None
        try:
            query = struct.pack(self._FLOCK, fcntl.F_WRLCK, os.SEEK_SET, 0, 0, 0)
            l_type, _, _, _, pid = struct.unpack(self._FLOCK, fcntl.fcntl(fd, fcntl.F_GETLK, query))
        finally:
            os.close(fd)  # never held a lock on this fd, so closing it releases nothing
        return None if l_type == fcntl.F_UNLCK else pid
