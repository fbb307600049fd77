"""Never two instances of a stream across hosts: a PostgreSQL advisory lock in the catalog's
database, held by the stream's driver for its whole life.

The instance lock (k2.streams.state.InstanceLock) is a lock on a local file: it keeps two copies
of a stream apart on one host only. With the catalog on PostgreSQL (the scale-out form) and the
checkpoints on S3, a stream may start on any host, so it also takes a session-level advisory lock
in the catalog's database, which every host reaches. The server drops that lock with the session:
a killed driver's socket closes and the next start takes it at once; a driver cut off from the
server notices within one watch (``check``) and stops, as a stream does whenever the catalog is
gone, so a lock it no longer holds never keeps it writing. With a SQLite catalog (one host) there
is no fence beyond the instance lock.
"""

from __future__ import annotations

import os
import socket
from typing import Any

from k2.lake.catalog_db import NAMESPACE, applies, connect, lock_key
from k2.settings import LakeSettings

__all__ = ["NAMESPACE", "CatalogFence", "applies", "stream_key"]


def stream_key(exchange: str) -> int:
    return lock_key(f"k2-bronze-{exchange}")


class CatalogFence:
    def __init__(self, lake: LakeSettings, exchange: str) -> None:
        self.lake = lake
        self.exchange = exchange
        self.name = f"k2-bronze-{exchange} host={socket.gethostname()} pid={os.getpid()}"
        self._conn: Any = None

    def acquire(self) -> bool:
        """Take the lock; False when another session holds it. Raises psycopg2.Error when the
        server cannot be reached (the caller treats that as a catalog outage)."""
        conn = self._connect()
        with conn.cursor() as cur:
            cur.execute("SELECT pg_try_advisory_lock(%s, %s)", (NAMESPACE, stream_key(self.exchange)))
            held = cur.fetchone()[0]
        if held:
            self._conn = conn
        else:
            conn.close()
        return held

    def holder(self) -> str | None:
        """Who holds the lock (its session's name: exchange, host and pid), or None."""
        conn = self._conn or self._connect()
        try:
            with conn.cursor() as cur:
                cur.execute(
                    "SELECT a.application_name FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid "
                    "WHERE l.locktype = 'advisory' AND l.granted AND l.classid = %s::oid AND l.objid = %s::oid "
                    "AND l.objsubid = 2",
                    (NAMESPACE, stream_key(self.exchange) & 0xFFFFFFFF),
                )
                row = cur.fetchone()
        finally:
            if conn is not self._conn:
                conn.close()
        return row[0] if row else None

    def check(self) -> bool:
        """Whether the lock is still held: the session is alive. A lost session lost the lock."""
        import psycopg2

        if self._conn is None:
            return False
        try:
            with self._conn.cursor() as cur:
                cur.execute("SELECT 1")
        except psycopg2.Error:
            return False
        return True

    def release(self) -> None:
        if self._conn is not None:
            self._conn.close()  # the server drops a session's advisory locks with it
            self._conn = None

    def _connect(self):
        return connect(self.lake, self.name)
