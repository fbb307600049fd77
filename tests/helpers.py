"""Small test utilities: free ports and condition waits (never bare sleeps)."""

from __future__ import annotations

import random
import socket
import time
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

T = TypeVar("T")


def _ephemeral_ports() -> range:
    try:
        low, high = map(int, Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split())
    except (OSError, ValueError):
        low, high = 32768, 60999  # Linux's default
    return range(low, high + 1)


_handed_out: set[int] = set()


def free_port() -> int:
    """A free port for a test's server, outside the kernel's ephemeral range: a port from there can
    be taken, between this check and the server's bind, by any process's outgoing connection or
    port-0 listener (a Kafka client, a Spark driver), and the server then fails to start."""
    return free_port_block(1)


def free_port_block(count: int) -> int:
    """The first of ``count`` consecutive free loopback ports (Kafka node n uses base + n - 1), from
    the same range as ``free_port`` and never handed out twice in one session."""
    ephemeral = _ephemeral_ports()
    bases = [
        base
        for base in range(20000, 32768 - count)
        if not any(p in ephemeral or p in _handed_out for p in range(base, base + count))
    ]
    for base in random.sample(bases, len(bases)):
        ports = range(base, base + count)
        if any(p in _handed_out for p in ports):  # a block handed out since the list was made
            continue
        try:
            for port in ports:
                with socket.socket() as sock:
                    sock.bind(("127.0.0.1", port))
        except OSError:
            continue
        _handed_out.update(ports)
        return base
    raise AssertionError(f"no {count} consecutive free ports between 20000 and 32767 outside the ephemeral range")


def wait_for(condition: Callable[[], T], timeout: float, what: str, interval: float = 0.1) -> T:
    """Poll ``condition`` until it returns a truthy value; fail the test after ``timeout``."""
    deadline = time.monotonic() + timeout
    while True:
        result = condition()
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(interval)


def maps_file(pid: int, path: Path) -> bool:
    """Whether the process ``pid`` or one of its children (spark-submit runs the JVM as its child
    or execs it) has ``path`` mapped into memory: a JVM maps the class archive it accepted."""
    import psutil

    process = psutil.Process(pid)
    return any(
        str(path) in Path(f"/proc/{p.pid}/maps").read_text() for p in [process, *process.children(recursive=True)]
    )
