"""Iceberg maintenance on real Spark and Iceberg: fewer files, the same rows, old snapshots and
orphans gone, young files spared, and concurrent appends (a stream) never lost."""

from __future__ import annotations

import os
import threading
import time
from pathlib import Path

import pytest

from k2.lake.catalog import load_catalog
from k2.lake.maintenance import maintain_table
from tests.helpers import wait_for
from tests.integration.medallion_fixtures import binance, own_lake, table_rows, write_bronze

pytestmark = pytest.mark.integration

BRONZE = "bronze.binance_trades"
TS = "2026-11-20T10:00:40"


def append_batches(spark, settings, first: int, batches: int, size: int = 5) -> None:
    for b in range(first, first + batches):
        write_bronze(
            spark,
            settings,
            "binance",
            [(0, b * size + i, TS, binance(b * size + i, "100.0", "1.0", "2026-11-20T10:00:05")) for i in range(size)],
        )


def table_dir(settings, identifier: str) -> Path:
    namespace, name = identifier.split(".")
    return Path(settings.lake.warehouse.removeprefix("file://")) / namespace / name


def test_maintenance_compacts_expires_and_removes_orphans_without_changing_rows(spark, tmp_path) -> None:
    lake = own_lake(spark, tmp_path / "home", maintenance_snapshot_retention_h=0.0001, maintenance_min_snapshots=1)
    append_batches(spark, lake, 0, 8)
    rows = table_rows(spark, lake, BRONZE)
    data = table_dir(lake, BRONZE) / "data"
    old_orphan, young_orphan = data / "left-by-a-crashed-writer.parquet", data / "commit-in-flight.parquet"
    for orphan in (old_orphan, young_orphan):
        orphan.write_bytes(b"not referenced by any snapshot")
    four_days_ago = time.time() - 4 * 86_400
    os.utime(old_orphan, (four_days_ago, four_days_ago))
    # every append older than the retention (0.36 s): a fast run could otherwise keep the last ones
    newest = max(s.timestamp_ms for s in load_catalog(lake.lake).load_table(BRONZE).snapshots()) / 1000
    wait_for(lambda: time.time() - newest > 1.0, 10, "the appends to age past the retention")

    done = maintain_table(spark, lake, BRONZE)

    assert done.error == "" and done.steps == [
        "rewrite_data_files",
        "rewrite_manifests",
        "expire_snapshots",
        "remove_orphan_files",
    ]
    assert done.data_files_before >= 8 and done.data_files_after == 1 and done.rewritten_files == done.data_files_before
    assert table_rows(spark, lake, BRONZE) == rows
    left = [
        r.operation for r in spark.sql(f"SELECT operation FROM {lake.lake.catalog_name}.{BRONZE}.snapshots").collect()
    ]
    # appends older than the retention are gone; the last one may be younger than it (a fast machine),
    # and maintenance's own snapshots (compaction, manifests) are younger still
    assert left.count("append") <= 1 and done.expired_snapshots >= 7 and len(left) <= 3
    assert done.orphans_removed >= 1 and not old_orphan.exists() and young_orphan.exists()
    again = maintain_table(spark, lake, BRONZE)  # nothing left to do: still the same rows
    assert again.error == "" and again.rewritten_files == 0 and table_rows(spark, lake, BRONZE) == rows


def test_maintenance_while_a_writer_appends_loses_nothing(spark, tmp_path) -> None:
    lake = own_lake(spark, tmp_path / "home")
    append_batches(spark, lake, 0, 6)
    failures: list[BaseException] = []

    def writer() -> None:  # a stream committing micro-batches during maintenance
        try:
            append_batches(spark, lake, 6, 12)
        except BaseException as exc:  # reported by the assertion below
            failures.append(exc)

    thread = threading.Thread(target=writer)
    thread.start()
    done = maintain_table(spark, lake, BRONZE)
    thread.join(timeout=300)
    assert not thread.is_alive() and failures == []
    assert done.error == "" and done.rewritten_files >= 2
    offsets = [
        r[0] for r in spark.sql(f"SELECT kafka_offset FROM {lake.lake.catalog_name}.{BRONZE} ORDER BY 1").collect()
    ]
    assert offsets == list(range(18 * 5))  # every append landed exactly once
