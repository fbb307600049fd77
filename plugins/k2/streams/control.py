"""The documents through which a stream, its supervisor, monitoring, the batch's sensor and the
query talk: ``status`` (the job's own view), ``progress`` (its last batch), ``idle`` (its last
trigger without data), ``supervisor`` (restart history and back-off), ``lease`` and ``stop``.

With a SQLite catalog (one host) they are files under ``K2_HOME/streams/<exchange>/``
(k2.streams.state). With the catalog on PostgreSQL (the scale-out form) they are rows of
``k2_docs`` (scope ``stream/<exchange>``, k2.docstore) in the catalog's database, which every
host reaches: a check run by any Celery worker reads the restart history the previous one wrote,
and monitoring, the sensor and ``k2 status`` on any host read the stream's progress. The listener
in the driver's JVM writes its progress and idle files where the driver runs; the driver copies
them to the table at each watch (k2.streams.job.WATCH_EVERY_S), so readers elsewhere see them at
most that much later.
"""

from __future__ import annotations

import time
from typing import Any

from k2.docstore import DocStore, FileDocs, doc_store, shared_beyond_host
from k2.settings import Settings
from k2.streams.state import StreamPaths, read_json

StreamControl = DocStore  # a stream's scope of the deployment's document store

# the documents' files with a SQLite catalog, under K2_HOME/streams/<exchange>/ (k2.streams.state)
FILES = {
    "status": "status.json",
    "progress": "progress.json",
    "idle": "idle.json",
    "supervisor": "supervisor.json",
    "lease": "lease",
    "stop": "stop",
}
CHECKER = "supervisor"  # the exclusive lock one supervisor check holds (supervisor.lock with files)


def file_control(paths: StreamPaths) -> FileDocs:
    return FileDocs(paths.root, FILES)


def stream_control(settings: Settings, exchange: str) -> StreamControl:
    """Where this deployment keeps the stream's documents (see the module's docstring)."""
    return doc_store(settings, f"stream/{exchange}", StreamPaths.of(settings, exchange).root, FILES)


def renew_lease(control: StreamControl, ttl_s: float, holder: str) -> None:
    control.write("lease", {"expires_at": time.time() + ttl_s, "holder": holder, "renewed_at": time.time()})


class ListenerMirror:
    """Copies the listener's progress and idle files, written where the driver runs, into a
    shared control store when they changed (nothing to do with files as the store)."""

    def __init__(self, paths: StreamPaths, control: StreamControl) -> None:
        self.paths = paths
        self.control = control
        self._seen: dict[str, float] = {}

    def __call__(self) -> None:
        if not shared_beyond_host(self.control):
            return
        for doc, path in (("progress", self.paths.progress), ("idle", self.paths.idle)):
            try:
                mtime = path.stat().st_mtime
            except FileNotFoundError:
                continue
            body = read_json(path) if mtime != self._seen.get(doc) else None
            if body is not None:
                self.control.write(doc, body)
                self._seen[doc] = mtime


def read_doc(settings: Settings, exchange: str, doc: str) -> dict[str, Any] | None:
    """One document, read once (monitoring, the sensor, the query)."""
    control = stream_control(settings, exchange)
    try:
        return control.read(doc)
    finally:
        control.close()
