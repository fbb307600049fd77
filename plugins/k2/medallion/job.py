"""The batch job's entry: one layer (silver or gold), one exchange, one interval, gated by Great
Expectations, with a typed report. Idempotent, so any interval can be re-run or backfilled and
gives the same tables. ``spark_jobs/medallion.py`` is the file spark-submit runs."""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from k2.log import configure_logging, get_logger
from k2.medallion.interval import Interval, validate_interval
from k2.medallion.reports import MedallionReport
from k2.settings import Settings, load_settings

if TYPE_CHECKING:
    from pyspark.sql import DataFrame, SparkSession

log = get_logger("k2.medallion")

# (layer, frame about to be written, interval) -> the gate's summary; raises to publish nothing
Gate = Callable[[str, "DataFrame", Interval], dict[str, Any]]


def quality_gate(settings: Settings) -> Gate:
    def gate(layer: str, frame: DataFrame, interval: Interval) -> dict[str, Any]:
        from pyspark import StorageLevel

        from k2.monitoring.alerts import send_alert
        from k2.quality import QualityGateFailed, enforce, validate

        # GX reads the frame once per metric, and the caller then uses the same frame (publishes
        # it, or parses Bronze): computed once. For Bronze that is one pass over the stream's many
        # small files instead of one per metric; what does not fit in memory spills to local disk.
        frame.persist(StorageLevel.MEMORY_AND_DISK)
        report = validate(
            layer, frame, settings=settings, exchange=interval.exchange, run_name=interval.label.replace("/", "_")
        )
        if not report.passed:
            send_alert("critical", f"quality {layer}.{interval.exchange}", str(QualityGateFailed(report)))
        enforce(report)
        return report.summary()

    return gate


def run(
    spark: SparkSession, settings: Settings, layer: str, interval: Interval, gate: Gate | None = None
) -> MedallionReport:
    from k2.medallion.gold import run_gold
    from k2.medallion.silver import run_silver

    gate = gate or quality_gate(settings)
    started = time.monotonic()
    log.info("medallion.started", layer=layer, interval=interval.label)
    report = (run_silver if layer == "silver" else run_gold)(spark, settings, interval, gate)
    report.duration_s = round(time.monotonic() - started, 2)
    if layer == "silver":
        from k2.monitoring.metrics import record_silver_run

        record_silver_run(settings, report)  # monitoring's dead-letter ratio
    log.info("medallion.finished", **{k: v for k, v in report.to_dict().items() if k != "quality"})
    return report


def main(argv: list[str] | None = None) -> int:
    from k2.spark import build_spark_session

    parser = argparse.ArgumentParser(description="Bronze -> Silver or Silver -> Gold for one interval.")
    parser.add_argument("--layer", choices=("silver", "gold"), required=True)
    parser.add_argument("--exchange", required=True)
    parser.add_argument("--start", required=True, help="ISO 8601, inclusive")
    parser.add_argument("--end", required=True, help="ISO 8601, exclusive")
    parser.add_argument("--report", type=Path, help="write the run's report (JSON) here")
    args = parser.parse_args(argv)
    settings = load_settings()
    configure_logging(settings)
    interval = validate_interval(args.exchange, args.start, args.end, exchanges=settings.exchanges)
    spark = build_spark_session(settings, f"k2-{args.layer}-{args.exchange}")
    try:
        report = run(spark, settings, args.layer, interval)
    finally:
        spark.stop()
    if args.report:
        report.write(args.report)
    print(report.to_json())
    return 0
