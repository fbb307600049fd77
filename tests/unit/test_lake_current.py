"""Tables at their current metadata (k2.lake.current) on a real SQLite catalog: the table a query
loaded is reused only while the catalog still points at its metadata file."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pyarrow as pa
import pytest

from k2.lake.catalog import load_catalog
from k2.lake.current import CurrentTables, derived
from k2.lake.tables import MEDALLION_LEDGER, all_tables, ensure_tables
from k2.medallion import ledger
from k2.settings import Settings


def test_a_table_is_parsed_again_only_after_another_writer_commits(tmp_path: Path) -> None:
    from pyiceberg.exceptions import NoSuchTableError

    settings = Settings.from_env({}, home=tmp_path)
    ensure_tables(load_catalog(settings.lake), all_tables(settings))
    tables = CurrentTables(load_catalog(settings.lake))
    first = tables.load(MEDALLION_LEDGER.identifier)
    assert tables.load(MEDALLION_LEDGER.identifier) is first  # unchanged: not parsed again

    writer = load_catalog(settings.lake).load_table(MEDALLION_LEDGER.identifier)  # another process's catalog
    writer.append(pa.Table.from_pylist([], schema=writer.schema().as_arrow()))
    writer = writer.refresh()
    assert writer.metadata_location != first.metadata_location
    after = tables.load(MEDALLION_LEDGER.identifier)
    assert after.metadata_location == writer.metadata_location
    assert after.current_snapshot() is not None and first.current_snapshot() is None
    assert tables.load(MEDALLION_LEDGER.identifier) is after

    load_catalog(settings.lake).drop_table(MEDALLION_LEDGER.identifier)
    with pytest.raises(NoSuchTableError):  # a dropped table is not served from memory
        tables.load(MEDALLION_LEDGER.identifier)


def test_a_derived_value_is_computed_once_per_version_of_its_table_and_key(tmp_path: Path) -> None:
    settings = Settings.from_env({}, home=tmp_path)
    ensure_tables(load_catalog(settings.lake), all_tables(settings))
    tables = CurrentTables(load_catalog(settings.lake))
    computed: list[tuple[str, str | None]] = []

    def count(key: str):
        def compute(table) -> int:
            computed.append((key, table.metadata_location))
            return len(table.scan().to_arrow())

        return lambda: derived(tables.load(MEDALLION_LEDGER.identifier), key, compute)

    rows, other = count("rows"), count("other")
    assert rows() == 0 and rows() == 0 and other() == 0
    assert [key for key, _ in computed] == ["rows", "other"]  # once per key while the table is unchanged

    start = dt.datetime(2026, 11, 30, 10, tzinfo=dt.UTC)
    ledger.record(settings.lake, ledger.LedgerEntry("silver", "binance", start, start + dt.timedelta(hours=1), False))
    assert rows() == 1 and rows() == 1  # another writer's commit: computed again, once
    assert [key for key, _ in computed] == ["rows", "other", "rows"]
    assert computed[-1][1] == load_catalog(settings.lake).load_table(MEDALLION_LEDGER.identifier).metadata_location
