"""Operators and sensor of the Bronze -> Silver -> Gold batch: each resolves its interval from the
run (data interval, or validated manual/backfill parameters) and does one thing with it."""

from __future__ import annotations

import datetime as dt
import json
from typing import Any

from airflow.sdk import BaseOperator, BaseSensorOperator
from airflow.sdk.exceptions import AirflowSkipException

from k2.batch.interval import Interval, validate_interval
from k2.settings import PROJECT_ROOT, load_settings

MEDALLION_APPLICATION = PROJECT_ROOT / "spark_jobs" / "medallion.py"


def run_interval(context: Any, exchange: str) -> Interval:
    """The interval a task works on: the run's ``start``/``end`` parameters when given (manual
    trigger), else its data interval (schedule and Airflow backfills). Skips the task when the run
    names another exchange."""
    params = context["params"]
    chosen = params.get("exchange") or "all"
    if chosen not in ("all", exchange):
        raise AirflowSkipException(f"this run processes {chosen} only")
    settings = load_settings()
    if params.get("start") or params.get("end"):
        return validate_interval(exchange, params.get("start") or "", params.get("end") or "",
                                 exchanges=settings.exchanges)
    start, end = context.get("data_interval_start"), context.get("data_interval_end")
    if start is None or end is None or start == end:  # a manual run without parameters: the last full hour
        end = dt.datetime.now(dt.UTC).replace(minute=0, second=0, microsecond=0)
        start = end - dt.timedelta(hours=1)
    return validate_interval(exchange, start, end, exchanges=settings.exchanges)


def validate_run_params(params: dict[str, Any]) -> str:
    """Fails a run before any work when its parameters are wrong; says what it will process."""
    settings = load_settings()
    chosen = params.get("exchange") or "all"
    exchanges = settings.exchanges if chosen == "all" else (chosen,)
    if params.get("start") or params.get("end"):
        intervals = [validate_interval(ex, params.get("start") or "", params.get("end") or "",
                                       exchanges=settings.exchanges) for ex in exchanges]
        return ", ".join(i.label for i in intervals)
    if chosen != "all":
        validate_interval(chosen, "2026-01-01T00:00:00Z", "2026-01-01T01:00:00Z", exchanges=settings.exchanges)
    return f"{'/'.join(exchanges)}: the run's data interval"


class BronzeSettledSensor(BaseSensorOperator):
    """Waits until Bronze holds every Kafka record of the interval (k2.batch.settle)."""

    template_fields = ("exchange",)
    ui_color = "#cd7f32"

    def __init__(self, *, exchange: str, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.exchange = exchange

    def poke(self, context: Any) -> bool:
        from k2.batch.settle import bronze_rows_at_most, bronze_settlement

        interval = run_interval(context, self.exchange)
        settings = load_settings()
        settlement = bronze_settlement(settings, self.exchange, interval.end)
        self.log.info("interval=%s settled=%s %s", interval.label, settlement.settled, settlement.detail)
        if settlement.settled and bronze_rows_at_most(settings, self.exchange, interval.start, interval.end) == 0:
            # no Spark job for an hour without data (e.g. the hour before the streams started)
            raise AirflowSkipException(f"Bronze {self.exchange} holds no record in {interval.label}: nothing to do")
        return settlement.settled


class MedallionOperator(BaseOperator):
    """Runs ``spark_jobs/medallion.py`` for one layer (silver or gold), exchange and interval through
    the Apache Spark provider, and returns the job's report (counts, dead-letter reasons, quality)."""

    template_fields = ("exchange",)
    ui_color = "#c0c0c0"

    def __init__(self, *, layer: str, exchange: str, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        if layer not in ("silver", "gold"):
            raise ValueError(f"layer must be silver or gold, not {layer!r}")
        self.layer = layer
        self.exchange = exchange

    def execute(self, context: Any) -> dict[str, Any]:
        from k2.airflow.hooks import submit_job

        interval = run_interval(context, self.exchange)
        self.log.info("submitting %s for %s", self.layer, interval.label)
        report = submit_job(load_settings(), name=f"k2-{self.layer}-{self.exchange}", application=MEDALLION_APPLICATION,
                            args=["--layer", self.layer, "--exchange", self.exchange,
                                  "--start", interval.start.isoformat(), "--end", interval.end.isoformat()])
        for line in summary_lines(report):
            self.log.info("%s", line)
        return report


def summary_lines(report: dict[str, Any]) -> list[str]:
    """What the task log shows of a run: counts, and where the validation results are kept."""
    if report["layer"] == "silver":
        lines = [f"bronze_rows={report['bronze_rows']} items={report['items']} silver_new={report['silver_new']} "
                 f"duplicates={report['duplicates']} dead_letters={report['dead_letters']} "
                 f"reasons={json.dumps(report['dead_letter_reasons'], sort_keys=True)}"]
    else:
        lines = [f"bars={json.dumps(report['bars'], sort_keys=True)}"]
    for layer, result in (report.get("quality") or {}).items():
        if not isinstance(result, dict) or "passed" not in result:
            continue
        lines.append(f"quality {layer}: passed={result['passed']} evaluated={result['evaluated']} "
                     f"critical={len(result['critical'])} warnings={len(result['warnings'])} "
                     f"results={result['docs'] or 'K2_HOME/quality'}")
        findings = result["critical"] + result["warnings"]
        lines += [f"  {f['severity']}: {f['expectation']}: {f['detail']}" for f in findings]
    return lines
