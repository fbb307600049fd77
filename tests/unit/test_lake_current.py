"""Tables at their current metadata (k2.lake.current) on a real SQLite catalog: the table a query
loaded is reused only while the catalog still points at its metadata file."""

from __future__ import annotations

from pathlib import Path

import pyarrow as pa
import pytest

from k2.lake.catalog import load_catalog
from k2.lake.current import CurrentTables
from k2.lake.tables import MEDALLION_LEDGER, all_tables, ensure_tables
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
