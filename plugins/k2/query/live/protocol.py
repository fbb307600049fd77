"""How ``k2.query`` talks to the query server: a Unix socket that only K2's user can open, one request
per connection. The request is a JSON line; the answer a JSON line (``ok``, or the error and its fix).
A table comes as an Arrow IPC stream in an anonymous memory file whose descriptor travels with the
answer's line (SCM_RIGHTS): the client maps it and reads the table in place. Streamed through the
socket, a 245,000-trade answer (43 MB) took 24-110 ms to cross on an idle machine, copied twice by
the kernel and once by a buffered reader; written to the memory file and mapped, 11-13 ms."""

from __future__ import annotations

import hashlib
import json
import mmap
import os
import socket
from pathlib import Path
from typing import Any

import pyarrow as pa

from k2.errors import K2Error
from k2.log import get_logger
from k2.settings import Settings

log = get_logger(__name__)
_MAX_SOCKET_PATH = 100  # sun_path holds 108 bytes
_LINE_BYTES = 65_536  # read at a time until an answer's line ends


def socket_path(settings: Settings) -> Path:
    """K2_HOME/run/query.sock, or, where that path is too long for a socket, one in a 0700
    directory of the user's own under the system's temporary directory."""
    path = settings.run_dir / "query.sock"
    if len(str(path)) <= _MAX_SOCKET_PATH:
        return path
    digest = hashlib.sha256(str(settings.home.resolve()).encode()).hexdigest()[:16]
    return Path("/tmp") / f"k2-{os.getuid()}" / f"query-{digest}.sock"


def read_request(sock: socket.socket) -> dict[str, Any]:
    line, _ = _read_line(sock)
    return json.loads(line)


def send_answer(sock: socket.socket, table: pa.Table | None, header: dict[str, Any]) -> None:
    """``header`` as the answer's line and, for a table, the descriptor of a memory file holding it."""
    line = (json.dumps({"ok": True, "table": table is not None} | header, default=str) + "\n").encode()
    if table is None:
        sock.sendall(line)
        return
    fd = table_file(table)
    try:
        sent = socket.send_fds(sock, [line], [fd])
        if sent < len(line):  # the descriptor went with the first byte: the rest of a long line
            sock.sendall(line[sent:])
    finally:
        os.close(fd)


def send_error(sock: socket.socket, cause: str, fix: str, *, fallback: bool = False) -> None:
    sock.sendall((json.dumps({"ok": False, "cause": cause, "fix": fix, "fallback": fallback}) + "\n").encode())


def table_file(table: pa.Table) -> int:
    """An anonymous memory file (closed on exec) holding ``table`` as an Arrow IPC stream; its descriptor.
    Arrow writes it through a file of its own opened on the memory file (``/proc/self/fd``), so the
    whole write runs without the GIL: through a Python file object each of the stream's buffers took
    the GIL, which the server's judging threads hold for long stretches
    (benchmarks/answer_handover.py)."""
    fd = os.memfd_create("k2-query-answer", os.MFD_CLOEXEC)
    try:
        with pa.OSFile(f"/proc/self/fd/{fd}", "wb") as file, pa.ipc.new_stream(file, table.schema) as writer:
            writer.write_table(table)
    except BaseException:
        os.close(fd)
        raise
    return fd


def mapped_table(fd: int) -> pa.Table:
    """The table in the memory file ``fd``, read in place: its buffers keep the mapping alive."""
    size = os.fstat(fd).st_size
    mapped = mmap.mmap(fd, size, prot=mmap.PROT_READ)
    return pa.ipc.open_stream(pa.py_buffer(mapped)).read_all()


def ask(settings: Settings, request: dict[str, Any]) -> tuple[pa.Table | None, dict[str, Any]] | None:
    """The server's answer, or None when no server runs (or it failed unexpectedly: the query is then
    answered without it). A K2Error the server raised (a missing table, an unreadable topic) is raised."""
    path = socket_path(settings)
    if not path.exists():
        return None
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.settimeout(settings.batch.query_tail_timeout_s + 120)
        try:
            sock.connect(str(path))
        except (FileNotFoundError, ConnectionRefusedError):  # a server that stopped without cleaning up
            return None
        sock.sendall((json.dumps(request, default=str) + "\n").encode())
        line, fds = _read_line(sock)
    try:
        header = json.loads(line or b'{"ok": false, "fallback": true, "cause": "no answer"}')
        if not header["ok"]:
            if header.get("fallback"):
                log.warning("query.server_failed", cause=header["cause"], socket=str(path))
                return None
            raise K2Error(header["cause"], header["fix"])
        if not header["table"]:
            return None, header
        if not fds:
            log.warning("query.server_failed", cause="its answer came without the table's file", socket=str(path))
            return None
        return mapped_table(fds[0]), header
    finally:
        for fd in fds:
            os.close(fd)


def _read_line(sock: socket.socket) -> tuple[bytes, list[int]]:
    """One line (empty if the peer closed first) and the descriptors that came with it."""
    chunks: list[bytes] = []
    received: list[int] = []
    while not chunks or b"\n" not in chunks[-1]:
        data, fds, _, _ = socket.recv_fds(sock, _LINE_BYTES, 4)
        received += fds
        if not data:
            break
        chunks.append(data)
    return b"".join(chunks), received
