"""Iceberg maintenance for K2's tables, one namespace (layer) or all:

    spark-submit ... spark_jobs/maintenance.py [--namespace bronze] [--report out.json]

Every table is maintained even when another fails; the job exits non-zero if any table failed,
after reporting what it did for each.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from k2.lake.maintenance import MaintenanceReport, maintain_table
from k2.lake.tables import all_tables
from k2.log import configure_logging, get_logger
from k2.settings import load_settings

log = get_logger("k2.maintenance")


def main(argv: list[str] | None = None) -> int:
    from k2.spark import batch_session

    parser = argparse.ArgumentParser(description="Compact, rewrite manifests, expire snapshots, remove orphans.")
    parser.add_argument("--namespace", help="only the tables of this namespace (bronze, silver, gold, ops)")
    parser.add_argument("--report", type=Path, help="write the run's report (JSON) here")
    args = parser.parse_args(argv)
    settings = load_settings()
    configure_logging(settings)
    tables = [t.identifier for t in all_tables(settings) if args.namespace in (None, t.identifier.split(".", 1)[0])]
    spark = batch_session(settings, f"k2-maintenance-{args.namespace or 'all'}")
    try:
        report = MaintenanceReport(args.namespace or "all", [maintain_table(spark, settings, t) for t in tables])
    finally:
        spark.stop()
    if args.report:
        report.write(args.report)
    print(report.to_json())
    failed = report.failed
    if failed:
        log.error("maintenance.incomplete", failed=failed)
    return 1 if failed else 0
