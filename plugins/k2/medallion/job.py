"""The batch job's entry: one layer (silver or gold), one exchange, one interval, gated by Great
Expectations, with a typed report. Idempotent, so any interval can be re-run or backfilled and
gives the same tables. ``spark_jobs/medallion.py`` is the file spark-submit runs."""

from __future__ import annotations

import argparse
import datetime as dt
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from k2.errors import K2Error
from k2.log import configure_logging, get_logger
from k2.medallion.interval import Interval, validate_interval
from k2.medallion.reports import MedallionReport
from k2.quality import QualityGateFailed
from k2.reports import EXIT_FAILED_FOR_GOOD, JobFailure
from k2.settings import Settings, load_settings

if TYPE_CHECKING:
    import pyarrow as pa
    from pyspark.sql import DataFrame, SparkSession

    from k2.medallion.coverage import Piece

log = get_logger("k2.medallion")

# (layer, frame about to be written or the Arrow rows of a small one, interval) -> the gate's
# summary; raises to publish nothing
Gate = Callable[[str, "DataFrame | pa.Table", Interval], dict[str, Any]]


def quality_gate(settings: Settings) -> Gate:
    """The gate of a batch task; GX starts importing now, behind the task's first Spark work."""
    from k2.quality import preload

    preload()

    def gate(layer: str, frame: DataFrame | pa.Table, interval: Interval) -> dict[str, Any]:
        """GX reads the frame once per metric, and the caller then publishes it or parses it: callers
        pass frames computed once (k2.medallion.lakeio.materialize) or rows held in the driver."""
        from k2.monitoring.alerts import send_alert
        from k2.quality import enforce, validate

        report = validate(
            layer, frame, settings=settings, exchange=interval.exchange, run_name=interval.label.replace("/", "_")
        )
        if not report.passed:
            send_alert("critical", f"quality {layer}.{interval.exchange}", str(QualityGateFailed(report)))
        enforce(report)
        return report.summary()

    return gate


def run(
    spark: SparkSession,
    settings: Settings,
    layer: str,
    interval: Interval,
    gate: Gate | None = None,
    *,
    catch_up: bool = False,
) -> MedallionReport:
    """Processes the interval, split into pieces of Bronze ingestion time (k2.medallion.coverage),
    and with ``catch_up`` every earlier piece the layer has not covered yet. Each piece is recorded
    in the ledger once written, so a run killed midway resumes where it stopped."""
    from k2.medallion import ledger
    from k2.medallion.coverage import passes, without_empty
    from k2.medallion.settle import bronze_rows_per_piece

    gate = gate or quality_gate(settings)
    started = time.monotonic()
    now = dt.datetime.now(dt.UTC)
    if interval.end > now:  # rows the stream has yet to write would fall into a range marked as done
        interval = Interval(interval.exchange, interval.start, max(interval.start, now))
    work, left = ledger.todo(
        settings.lake, layer, interval, catch_up=catch_up, max_pieces=settings.batch.catch_up_max_pieces
    )
    rows = bronze_rows_per_piece(settings, interval.exchange, work)
    if catch_up:  # a scheduled run over a range settled empty already (an earlier run's) redoes nothing
        work, rows = _without_empty_reruns(work, rows)
    # e.g. the hour's first minute, left to `k2 up`'s first run by the schedule's: a cold pass with
    # both gates cost 44 s on the Spark Connect server for nothing
    work, rows, empty = without_empty(work, rows)
    for piece in empty:
        ledger.record(settings.lake, ledger.LedgerEntry(layer, interval.exchange, piece.start, piece.end, piece.rerun))
    work = passes(work, rows, settings.batch.pass_max_rows)
    log.info(
        "medallion.started",
        layer=layer,
        interval=interval.label,
        pieces=len(work),
        pieces_left=left,
        empty_pieces_settled=len(empty),
    )
    parts = [
        run_piece(spark, settings, layer, Interval(interval.exchange, p.start, p.end), p.rerun, gate) for p in work
    ]
    report = combine(layer, interval, parts)
    report.pieces = [_label(p) for p in work]
    report.pieces_left = left
    report.duration_s = round(time.monotonic() - started, 2)
    if layer == "silver":
        from k2.monitoring.metrics import record_silver_run

        record_silver_run(settings, report)  # monitoring's dead-letter ratio
    log.info("medallion.finished", **{k: v for k, v in report.to_dict().items() if k != "quality"})
    return report


def _without_empty_reruns(work: list[Piece], rows: list[int]) -> tuple[list[Piece], list[int]]:
    kept = [(p, n) for p, n in zip(work, rows, strict=True) if n or not p.rerun]
    return [p for p, _ in kept], [n for _, n in kept]


def _label(piece: Piece) -> str:
    end = f"{piece.end:%H:%M:%S}" if piece.end.date() == piece.start.date() else f"{piece.end:%Y-%m-%dT%H:%M:%S}"
    return f"{piece.start:%Y-%m-%dT%H:%M:%S}..{end}{' (re-run)' if piece.rerun else ''}"


def run_piece(
    spark: SparkSession, settings: Settings, layer: str, piece: Interval, rerun: bool, gate: Gate
) -> MedallionReport:
    from k2.medallion import ledger
    from k2.medallion.gold import run_gold
    from k2.medallion.silver import run_silver

    log.info("medallion.piece", layer=layer, interval=piece.label, rerun=rerun)
    if layer == "silver":
        silver = run_silver(spark, settings, piece, gate)
        counts = {n: getattr(silver, n) for n in ("bronze_rows", "items", "silver_new", "duplicates", "dead_letters")}
        ledger.record(settings.lake, ledger.LedgerEntry(layer, piece.exchange, piece.start, piece.end, rerun, **counts))
        return silver
    gold = run_gold(spark, settings, piece, gate)
    entry = ledger.LedgerEntry(layer, piece.exchange, piece.start, piece.end, rerun, bars=sum(gold.bars.values()))
    ledger.record(settings.lake, entry)
    return gold


def combine(layer: str, interval: Interval, parts: list[MedallionReport]) -> MedallionReport:
    """One piece's report as it is; several added up, their gates keyed by piece."""
    from k2.medallion.reports import GoldReport, SilverReport

    if len(parts) == 1:
        return parts[0]
    total = (SilverReport if layer == "silver" else GoldReport)(
        interval.exchange, interval.start.isoformat(), interval.end.isoformat()
    )
    for part in parts:
        total.add(part)  # type: ignore[arg-type]
    return total


def main(argv: list[str] | None = None) -> int:
    from k2.spark import batch_session

    parser = argparse.ArgumentParser(description="Bronze -> Silver or Silver -> Gold for one interval.")
    parser.add_argument("--layer", choices=("silver", "gold"), required=True)
    parser.add_argument("--exchange", required=True)
    parser.add_argument("--start", required=True, help="ISO 8601, inclusive")
    parser.add_argument("--end", required=True, help="ISO 8601, exclusive")
    parser.add_argument("--report", type=Path, help="write the run's report (JSON) here")
    parser.add_argument(
        "--catch-up", action="store_true", help="also process the earlier Bronze ranges the layer has not covered"
    )
    args = parser.parse_args(argv)
    settings = load_settings()
    configure_logging(settings)
    try:
        interval = validate_interval(args.exchange, args.start, args.end, exchanges=settings.exchanges)
    except K2Error as exc:
        return failed_for_good("parameters", exc, args.report)
    spark = batch_session(settings, f"k2-{args.layer}-{args.exchange}")
    try:
        report = run(spark, settings, args.layer, interval, catch_up=args.catch_up)
    except QualityGateFailed as exc:  # the gate alerted already; a retry would fail (and alert) again
        return failed_for_good("quality", exc, args.report, alerted=True)
    finally:
        spark.stop()
    if args.report:
        report.write(args.report)
    print(report.to_json())
    return 0


def failed_for_good(kind: str, exc: K2Error, report: Path | None, *, alerted: bool = False) -> int:
    """Tells the submitting task, through the report file, that retrying would not help."""
    failure = JobFailure(kind, exc.cause, exc.fix, alerted=alerted)
    log.error("medallion.failed", failure=kind, cause=exc.cause, fix=exc.fix)
    if report is not None:
        failure.write(report)
    print(failure.message, file=sys.stderr)
    return EXIT_FAILED_FOR_GOOD
