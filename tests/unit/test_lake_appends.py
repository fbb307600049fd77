"""Small appends with bounded metadata (k2.lake.appends) on a real SQLite catalog."""

from __future__ import annotations

import datetime as dt
from dataclasses import asdict, replace
from pathlib import Path

import pyarrow as pa

from k2.lake import appends
from k2.lake.catalog import load_catalog
from k2.lake.tables import MEDALLION_LEDGER, STREAM_METRICS, TABLE_PROPERTIES, ensure_tables
from k2.medallion.ledger import LedgerEntry
from k2.settings import Settings

APPENDS = 25
T0 = dt.datetime(2026, 12, 6, tzinfo=dt.UTC)


def _rows(table, n: int) -> pa.Table:
    row = asdict(LedgerEntry("silver", f"x{n}", T0, T0, False, finished_at=T0))
    return pa.Table.from_pylist([row], schema=table.schema().as_arrow())


def test_a_table_appended_often_keeps_few_snapshots_and_manifests_and_every_row(tmp_path: Path) -> None:
    catalog = load_catalog(Settings.from_env({}, home=tmp_path).lake)
    # every snapshot is past its age at once
    often = replace(
        MEDALLION_LEDGER,
        properties={**MEDALLION_LEDGER.properties, appends.MAX_AGE: "0"},
    )
    plain = replace(MEDALLION_LEDGER, name="plain_ledger", properties=dict(TABLE_PROPERTIES))
    ensure_tables(catalog, [often, plain])
    for n in range(APPENDS):
        for spec in (often, plain):
            table = catalog.load_table(spec.identifier)
            appends.append(table, _rows(table, n))

    kept = catalog.load_table(often.identifier)
    assert len(kept.metadata.snapshots) < int(appends.APPENDED_OFTEN[appends.MIN_KEPT]) + appends.EXPIRE_EVERY
    assert len(kept.current_snapshot().manifests(kept.io)) <= int(
        appends.APPENDED_OFTEN["commit.manifest.min-count-to-merge"]
    )
    assert sorted(kept.scan().to_arrow().column("exchange").to_pylist()) == sorted(f"x{n}" for n in range(APPENDS))
    untouched = catalog.load_table(plain.identifier)  # a table that declares no age keeps every snapshot
    assert len(untouched.metadata.snapshots) == APPENDS
    assert len(untouched.current_snapshot().manifests(untouched.io)) == APPENDS


def test_the_tables_monitoring_and_the_batch_append_to_often_declare_it() -> None:
    for spec in (STREAM_METRICS, MEDALLION_LEDGER):
        assert appends.APPENDED_OFTEN.items() <= spec.properties.items()
