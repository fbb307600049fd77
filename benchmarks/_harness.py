"""Shared benchmark plumbing: an isolated embedded stack, timing, and result files."""

from __future__ import annotations

import json
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from k2.settings import Settings

RESULTS_DIR = Path(__file__).resolve().parent / "results"


def free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@contextmanager
def embedded_broker(**overrides) -> Iterator[Settings]:
    """A broker of its own in a temporary K2_HOME, so a benchmark never touches real state."""
    from k2.jvm import ensure_jars
    from k2.runtime.broker import LocalKafkaBroker

    with tempfile.TemporaryDirectory(prefix="k2-bench-") as home:
        settings = Settings.from_env(
            {},
            home=Path(home),
            kafka_port=free_port(),
            kafka_controller_port=free_port(),
            spark_ui_enabled="false",
            **overrides,
        )
        ensure_jars(settings)
        broker = LocalKafkaBroker(settings)
        broker.start()
        try:
            yield settings
        finally:
            broker.stop()


def timed(fn) -> float:
    started = time.perf_counter()
    fn()
    return time.perf_counter() - started


def median(values: list[float]) -> float:
    return statistics.median(values)


def progress(message: str) -> None:
    print(f"  .. {message}", file=sys.stderr, flush=True)


def write_results(name: str, results: dict) -> Path:
    RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    path = RESULTS_DIR / f"{name}.json"
    payload = {
        "benchmark": name,
        "machine": {"python": platform.python_version(), "cpus": _cpus(), "platform": platform.platform()},
        "measured_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        **results,
    }
    path.write_text(json.dumps(payload, indent=2))
    return path


def _cpus() -> int:
    import os

    return os.cpu_count() or 1


def jit_seconds(pid: int) -> float:
    """Seconds a JVM has spent compiling (HotSpot's java.ci.totalTime, read with the JDK's jcmd); 0
    when it cannot be read. A JVM compiles for minutes after it starts: CPU measured early includes it."""
    try:
        out = subprocess.run(["jcmd", str(pid), "PerfCounter.print"], capture_output=True, text=True, timeout=30).stdout
    except (OSError, subprocess.TimeoutExpired):
        return 0.0
    counters = dict(line.split("=", 1) for line in out.splitlines() if "=" in line)
    if "java.ci.totalTime" not in counters:
        return 0.0
    return int(counters["java.ci.totalTime"]) / int(counters["sun.os.hrt.frequency"])
