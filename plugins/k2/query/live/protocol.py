"""How ``k2.query`` talks to the query server: a Unix socket that only K2's user can open, one request
per connection. The request is a JSON line; the answer a JSON line (``ok``, or the error and its fix)
followed, for a table, by an Arrow IPC stream."""

from __future__ import annotations

import hashlib
import json
import os
import socket
from pathlib import Path
from typing import Any, BinaryIO

import pyarrow as pa

from k2.errors import K2Error
from k2.log import get_logger
from k2.settings import Settings

log = get_logger(__name__)
_MAX_SOCKET_PATH = 100  # sun_path holds 108 bytes


def socket_path(settings: Settings) -> Path:
    """K2_HOME/run/query.sock, or, where that path is too long for a socket, one in a 0700
    directory of the user's own under the system's temporary directory."""
    path = settings.run_dir / "query.sock"
    if len(str(path)) <= _MAX_SOCKET_PATH:
        return path
    digest = hashlib.sha256(str(settings.home.resolve()).encode()).hexdigest()[:16]
    return Path("/tmp") / f"k2-{os.getuid()}" / f"query-{digest}.sock"


def read_request(stream: BinaryIO) -> dict[str, Any]:
    return json.loads(stream.readline())


def write_table(stream: BinaryIO, table: pa.Table | None, header: dict[str, Any]) -> None:
    stream.write((json.dumps({"ok": True, "table": table is not None} | header, default=str) + "\n").encode())
    if table is not None:
        with pa.ipc.new_stream(stream, table.schema) as writer:
            writer.write_table(table)
    stream.flush()


def write_error(stream: BinaryIO, cause: str, fix: str, *, fallback: bool = False) -> None:
    stream.write((json.dumps({"ok": False, "cause": cause, "fix": fix, "fallback": fallback}) + "\n").encode())
    stream.flush()


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
        with sock.makefile("rwb") as stream:
            stream.write((json.dumps(request, default=str) + "\n").encode())
            stream.flush()
            header = json.loads(stream.readline() or b'{"ok": false, "fallback": true, "cause": "no answer"}')
            if not header["ok"]:
                if header.get("fallback"):
                    log.warning("query.server_failed", cause=header["cause"], socket=str(path))
                    return None
                raise K2Error(header["cause"], header["fix"])
            table = pa.ipc.open_stream(stream).read_all() if header["table"] else None
    return table, header
