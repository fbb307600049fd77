"""The stream's metadata upkeep (k2.streams.upkeep) on a real Iceberg table, in a Spark process of
its own: the upkeep's Java class is on a stream's class path only (spark.jars of role STREAM), and
the test session's SparkContext, once started, cannot take it. test_stream_upkeep.py runs this and
asserts on the JSON it prints last.

    python -m tests.integration.upkeep_probe K2_HOME
"""

from __future__ import annotations

import json
import sys
import threading
import time
from functools import reduce
from pathlib import Path

from k2.jvm import METADATA_UPKEEP_CLASS, ensure_jars
from k2.lake.catalog import load_catalog
from k2.lake.names import qualified
from k2.lake.tables import bronze_table, ensure_tables
from k2.spark import STREAM, build_spark_session
from k2.streams.jvm_logs import QUIETED, quiet_stream_logs
from k2.streams.upkeep import upkeep
from tests.conftest import make_settings
from tests.helpers import wait_for
from tests.integration.medallion_fixtures import binance, write_bronze

BRONZE = "bronze.binance_trades"
SIZE = 5  # rows per append
FIRST, CONCURRENT = 40, 20  # appends before the upkeep, and while it runs


def append(spark, settings, batches: range) -> None:
    """One commit per batch, as a stream's micro-batches."""
    for b in batches:
        offsets = range(b * SIZE, (b + 1) * SIZE)
        rows = [(0, o, "2026-11-20T10:00:40", binance(o, "100.0", "1.0", "2026-11-20T10:00:05")) for o in offsets]
        write_bronze(spark, settings, "binance", rows)


def checksum(spark, name: str, where: str = "true") -> list:
    row = spark.sql(
        f"SELECT count(*), sum(kafka_offset), bit_xor(xxhash64(kafka_offset, value)) FROM {name} WHERE {where}"
    ).first()
    return list(row)


def main(home: str) -> None:
    settings = make_settings(Path(home), maintenance_min_snapshots=1, bronze_snapshot_retention_s=600)
    ensure_jars(settings)
    ensure_tables(load_catalog(settings.lake), [bronze_table("binance")])
    spark = build_spark_session(settings, "k2-upkeep-probe", role=STREAM)
    spark.sparkContext.setLogLevel("WARN")  # as a stream logs
    quiet_stream_logs(spark)  # as a stream does (k2.streams.job)
    name = qualified(settings.lake.catalog_name, BRONZE)
    # Spark's batch append merges manifests past 100; the stream's fast append never does
    spark.sql(f"ALTER TABLE {name} SET TBLPROPERTIES ('commit.manifest-merge.enabled'='false')")
    java = reduce(getattr, METADATA_UPKEEP_CLASS.split("."), spark.sparkContext._jvm)

    append(spark, settings, range(FIRST))
    table = java.load(spark._jsparkSession, name)
    first_manifests = [str(m.path()) for m in table.currentSnapshot().dataManifests(table.io())]
    before = checksum(spark, name)
    cut_ms = max(s.timestampMillis() for s in table.snapshots()) + 1
    wait_for(lambda: time.time() * 1000 > cut_ms, 10, "the first appends to age past the cut")
    retention_ms = int(settings.streams.snapshot_retention_s * 1000)

    failures: list[str] = []

    def writer() -> None:  # the stream's own appends while the upkeep commits
        try:
            append(spark, settings, range(FIRST, FIRST + CONCURRENT))
        except Exception as exc:  # reported in the output
            failures.append(f"{type(exc).__name__}: {exc}"[:500])

    runs: list[dict] = []

    def run_upkeep() -> None:
        # snapshots up to the cut are older than the retention; those after it are not
        done = upkeep(spark, settings, BRONZE, now_ms=cut_ms + retention_ms)
        runs.append(done.__dict__)

    thread = threading.Thread(target=writer)
    thread.start()
    try:
        while thread.is_alive():
            run_upkeep()
    except Exception as exc:
        failures.append(f"upkeep: {type(exc).__name__}: {exc}"[:500])
    thread.join(300)
    run_upkeep()  # the writer is done: everything it added gets merged too

    table.refresh()
    log4j = spark.sparkContext._jvm.org.apache.logging.log4j
    snapshots = [(s.snapshotId(), s.timestampMillis(), s.operation()) for s in table.snapshots()]
    print(
        json.dumps(
            {
                "failures": failures,
                "runs": runs,
                "first_manifests": first_manifests,
                "first_manifests_left": [p for p in first_manifests if Path(p.removeprefix("file:")).exists()],
                "manifests": [str(m.path()) for m in table.currentSnapshot().dataManifests(table.io())],
                "snapshots": snapshots,
                "cut_ms": cut_ms,
                "before": before,
                "first_rows_after": checksum(spark, name, f"kafka_offset < {FIRST * SIZE}"),
                "offsets": [r[0] for r in spark.sql(f"SELECT kafka_offset FROM {name} ORDER BY 1").collect()],
                "levels": {n: str(log4j.LogManager.getLogger(n).getLevel()) for n in QUIETED},
            },
            default=str,
        )
    )
    spark.stop()


if __name__ == "__main__":
    main(sys.argv[1])
