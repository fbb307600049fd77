"""The medallion ledger (k2.medallion.ledger) on a real SQLite catalog: read once per version, and
every entry another writer records is read at the next call."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

from k2.lake.catalog import load_catalog
from k2.lake.tables import all_tables, ensure_tables
from k2.medallion import ledger
from k2.medallion.ledger import LedgerEntry
from k2.settings import Settings

HOUR = dt.timedelta(hours=1)
T0 = dt.datetime(2026, 12, 6, tzinfo=dt.UTC)


def test_entries_are_read_once_per_version_and_every_record_is_seen(tmp_path: Path) -> None:
    settings = Settings.from_env({}, home=tmp_path)
    ensure_tables(load_catalog(settings.lake), all_tables(settings))
    assert ledger.covered(settings.lake, "silver", "binance") == []

    ledger.record(settings.lake, LedgerEntry("silver", "binance", T0, T0 + HOUR, False, bronze_rows=7))
    ledger.record(settings.lake, LedgerEntry("gold", "binance", T0, T0 + HOUR, False))
    ledger.record(settings.lake, LedgerEntry("silver", "kraken", T0 + HOUR, T0 + 2 * HOUR, False))
    assert ledger.covered(settings.lake, "silver", "binance") == [(T0, T0 + HOUR)]
    assert ledger.covered(settings.lake, "silver", "kraken") == [(T0 + HOUR, T0 + 2 * HOUR)]
    assert [e.bronze_rows for e in ledger.entries(settings.lake, "silver", "binance")] == [7]
    # unchanged: not read again
    assert ledger._all_entries(settings.lake) is ledger._all_entries(settings.lake)

    # another process's record (its own catalog), as an Airflow task's
    other = load_catalog(settings.lake).load_table("ops.medallion_ledger")
    other.append(other.scan().to_arrow().slice(0, 0))  # a new version without a row
    ledger.record(settings.lake, LedgerEntry("silver", "binance", T0 + HOUR, T0 + 2 * HOUR, True))
    assert sorted(ledger.covered(settings.lake, "silver", "binance")) == [(T0, T0 + HOUR), (T0 + HOUR, T0 + 2 * HOUR)]
    assert ledger.covered(settings.lake, "gold", "binance") == [(T0, T0 + HOUR)]
