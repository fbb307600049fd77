"""Files and directories only K2's own user may read: the state directory (K2_HOME), which holds
the catalog, the Airflow database and generated secrets, and the secret files themselves."""

from __future__ import annotations

import os
from pathlib import Path

DIR_MODE = 0o700
FILE_MODE = 0o600


def private_dir(path: Path) -> Path:
    """``path`` created 0700 (its missing parents as usual); an existing one that K2's user owns
    loses any group and other access (one created before K2 restricted it is closed too)."""
    path.mkdir(mode=DIR_MODE, parents=True, exist_ok=True)  # mkdir's mode only ever loses umask bits
    status = path.stat()
    if status.st_uid == os.getuid() and status.st_mode & 0o077:
        path.chmod(status.st_mode & DIR_MODE)
    return path


def write_private(path: Path, text: str) -> None:
    """Writes ``text`` to ``path`` with mode 0600, atomically: never readable by others, not even
    for an instant, and never half-written."""
    private_dir(path.parent)
    tmp = path.with_name(f".{path.name}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, FILE_MODE)
    os.fchmod(fd, FILE_MODE)  # a leftover temporary file keeps its old mode through O_CREAT
    with os.fdopen(fd, "w") as fh:
        fh.write(text)
    tmp.replace(path)


def restrict_file(path: Path) -> None:
    """An existing file of K2's user made 0600 (e.g. one written before K2 restricted it)."""
    if path.is_file() and path.stat().st_uid == os.getuid() and path.stat().st_mode & 0o077:
        path.chmod(FILE_MODE)
