"""Small JSON documents K2's processes share: a stream's status, progress, lease and supervisor
state (k2.streams.control); monitoring's open incidents, alert outbox and latest figures
(k2.monitoring.shared).

With a SQLite catalog (one host) they are files under K2_HOME, replaced atomically. With the
catalog on PostgreSQL (the scale-out form) they are rows of ``k2_docs`` (scope, doc) in the
catalog's database, which every host reaches, so a task may run on any Airflow worker and see
what the previous one wrote. ``exclusive`` serialises the read-modify-writes of one scope's
document across processes (a file lock, or a session-level advisory lock that a dead holder's
session frees).
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import socket
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any, Protocol

from k2.lake import catalog_db
from k2.settings import Settings
from k2.streams.state import read_json, write_json

TABLE = "k2_docs"


class DocStore(Protocol):
    def read(self, doc: str) -> dict[str, Any] | None: ...

    def write(self, doc: str, body: dict[str, Any]) -> None: ...

    def delete(self, doc: str) -> None: ...

    def exclusive(self, name: str, *, wait: bool) -> contextlib.AbstractContextManager[bool]:
        """Held by one process at a time; yields False when another holds it and ``wait`` is False."""
        ...

    def close(self) -> None: ...


class FileDocs:
    """``directory/<file>`` per document: ``files`` names them, else ``<doc>.json``."""

    def __init__(self, directory: Path, files: Mapping[str, str] | None = None) -> None:
        self.directory = directory
        self.files = dict(files or {})

    def path(self, doc: str) -> Path:
        return self.directory / self.files.get(doc, f"{doc}.json")

    def read(self, doc: str) -> dict[str, Any] | None:
        data = read_json(self.path(doc))
        return data if isinstance(data, dict) or data is None else {"value": data}

    def write(self, doc: str, body: dict[str, Any]) -> None:
        path = self.path(doc)
        path.parent.mkdir(parents=True, exist_ok=True)
        write_json(path, body)

    def delete(self, doc: str) -> None:
        self.path(doc).unlink(missing_ok=True)

    @contextlib.contextmanager
    def exclusive(self, name: str, *, wait: bool) -> Iterator[bool]:
        self.directory.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.directory / f"{name}.lock", os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | (0 if wait else fcntl.LOCK_NB))
        except BlockingIOError:
            os.close(fd)
            yield False
            return
        try:
            yield True
        finally:
            fcntl.flock(fd, fcntl.LOCK_UN)
            os.close(fd)

    def close(self) -> None:
        pass


class CatalogDocs:
    """Rows (scope, doc) -> JSON body, on one autocommit session per instance: each write is
    visible at once to every host."""

    def __init__(self, settings: Settings, scope: str) -> None:
        self.lake = settings.lake
        self.scope = scope
        self._conn: Any = None

    def _cursor(self):
        if self._conn is None or self._conn.closed:
            name = f"k2-docs-{self.scope} host={socket.gethostname()} pid={os.getpid()}"
            conn = catalog_db.connect(self.lake, name)
            conn.autocommit = True
            with conn.cursor() as cur:
                cur.execute(
                    f"CREATE TABLE IF NOT EXISTS {TABLE} (scope text NOT NULL, doc text NOT NULL, body text NOT NULL, "
                    "updated_at timestamptz NOT NULL DEFAULT now(), PRIMARY KEY (scope, doc))"
                )
            self._conn = conn
        return self._conn.cursor()

    def _run(self, sql: str, params: tuple) -> list[tuple]:
        import psycopg2

        for attempt in (1, 2):  # a session the server dropped (a restart) is replaced once
            try:
                with self._cursor() as cur:
                    cur.execute(sql, params)
                    return cur.fetchall() if cur.description else []
            except (psycopg2.OperationalError, psycopg2.InterfaceError):
                self.close()
                if attempt == 2:
                    raise
        return []

    def read(self, doc: str) -> dict[str, Any] | None:
        rows = self._run(f"SELECT body FROM {TABLE} WHERE scope = %s AND doc = %s", (self.scope, doc))
        return json.loads(rows[0][0]) if rows else None

    def write(self, doc: str, body: dict[str, Any]) -> None:
        self._run(
            f"INSERT INTO {TABLE} (scope, doc, body) VALUES (%s, %s, %s) "
            "ON CONFLICT (scope, doc) DO UPDATE SET body = EXCLUDED.body, updated_at = now()",
            (self.scope, doc, json.dumps(body, default=str)),
        )

    def delete(self, doc: str) -> None:
        self._run(f"DELETE FROM {TABLE} WHERE scope = %s AND doc = %s", (self.scope, doc))

    @contextlib.contextmanager
    def exclusive(self, name: str, *, wait: bool) -> Iterator[bool]:
        key = (catalog_db.NAMESPACE, catalog_db.lock_key(f"k2-docs-{self.scope}-{name}"))
        if wait:
            self._run("SELECT pg_advisory_lock(%s, %s)", key)
            held = True
        else:
            (held,) = self._run("SELECT pg_try_advisory_lock(%s, %s)", key)[0]
        try:
            yield bool(held)
        finally:
            if held:
                self._run("SELECT pg_advisory_unlock(%s, %s)", key)

    def close(self) -> None:
        if self._conn is not None:
            with contextlib.suppress(Exception):
                self._conn.close()
            self._conn = None


def doc_store(settings: Settings, scope: str, directory: Path, files: Mapping[str, str] | None = None) -> DocStore:
    """The deployment's store for one scope: rows in the catalog's database when it is PostgreSQL,
    else files in ``directory``."""
    if catalog_db.applies(settings.lake):
        return CatalogDocs(settings, scope)
    return FileDocs(directory, files)


def shared_beyond_host(docs: DocStore) -> bool:
    """Whether the documents live beyond this host's files."""
    return not isinstance(docs, FileDocs)


@contextlib.contextmanager
def opened(store: DocStore) -> Iterator[DocStore]:
    try:
        yield store
    finally:
        store.close()
