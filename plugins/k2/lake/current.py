"""Tables at their current metadata, each metadata file parsed once: a query server loads the same
few tables at every query, and ``load_table`` parses the table's whole metadata JSON (every snapshot
and log entry it keeps) each time, while the table changes once an hour (Silver, Gold) or a few
times a minute (Bronze). With a SQL catalog, the metadata location is one indexed row to read; a
REST catalog's table is loaded at every call. ``derived`` keeps what is computed from a table's
current version (the ledger's entries, Silver's latest event time) the same way."""

from __future__ import annotations

import functools
import threading
from collections.abc import Callable, Hashable
from typing import TYPE_CHECKING, Any, TypeVar

from k2.settings import LakeSettings

if TYPE_CHECKING:
    from pyiceberg.catalog import Catalog
    from pyiceberg.table import Table

Value = TypeVar("Value")
_derived_lock = threading.Lock()
# (table location, key) -> (metadata location it was computed at, value): one value per key, the latest
_derived: dict[tuple[str, Hashable], tuple[str, Any]] = {}


def derived(table: Table, key: Hashable, compute: Callable[[Table], Value]) -> Value:
    """``compute(table)``, computed once per version of the table (its metadata location) and ``key``
    (what else the value depends on). Thread-safe; two threads may compute the same value once each."""
    slot = (table.location(), key)
    with _derived_lock:
        known = _derived.get(slot)
    if known is not None and known[0] == table.metadata_location:
        return known[1]
    value = compute(table)
    with _derived_lock:
        _derived[slot] = (table.metadata_location, value)
    return value


@functools.lru_cache(maxsize=8)
def tables_of(lake: LakeSettings) -> CurrentTables:
    """One per lake and process, on one catalog: opening a catalog (its database engine, the SQLite
    checks) costs tens of milliseconds, which a query server would pay at every query."""
    from k2.lake.catalog import load_catalog

    return CurrentTables(load_catalog(lake))


class CurrentTables:
    """``load(identifier)`` is ``catalog.load_table(identifier)``, reusing the table it gave last time
    while the catalog still points at the same metadata file. Thread-safe. For reading: a commit
    through a shared table would change it under its other readers."""

    def __init__(self, catalog: Catalog) -> None:
        self.catalog = catalog
        self._lock = threading.Lock()
        self._tables: dict[str, Table] = {}

    def load(self, identifier: str) -> Table:
        location = self._metadata_location(identifier)
        with self._lock:
            known = self._tables.get(identifier)
        if known is not None and location is not None and known.metadata_location == location:
            return known
        table = self.catalog.load_table(identifier)  # raises NoSuchTableError, as the catalog does
        with self._lock:
            self._tables[identifier] = table
        return table

    def _metadata_location(self, identifier: str) -> str | None:
        """The catalog's current metadata location of the table (None: unknown, or not a SQL catalog)."""
        from pyiceberg.catalog.sql import IcebergTables, SqlCatalog
        from sqlalchemy import select
        from sqlalchemy.orm import Session

        if not isinstance(self.catalog, SqlCatalog):
            return None
        namespace, name = identifier.rsplit(".", 1)
        with Session(self.catalog.engine) as session:
            return session.scalar(
                select(IcebergTables.metadata_location).where(
                    IcebergTables.catalog_name == self.catalog.name,
                    IcebergTables.table_namespace == namespace,
                    IcebergTables.table_name == name,
                )
            )
