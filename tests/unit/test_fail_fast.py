"""Deterministic failures fail the task at once (AirflowFailException: Airflow does not retry it) and
alert once; anything else stays an ordinary, retried failure. The job runs in-process here, behind a
stand-in for the Spark hook that turns its exit status into the hook's exception, as the real ones do."""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any

import pytest
from airflow.sdk.exceptions import AirflowException, AirflowFailException, AirflowSkipException

from k2.medallion import job
from k2.quality import QualityReport
from k2.quality.gate import Finding
from k2.reports import EXIT_FAILED_FOR_GOOD, JobFailure
from k2.settings import Settings

HOUR = dt.datetime(2026, 11, 20, 10, tzinfo=dt.UTC)


@pytest.fixture
def settings(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Settings:
    s = Settings.from_env({}, home=tmp_path)
    for module in ("k2.airflow.intervals", "k2.airflow.operators.medallion", "k2.medallion.job"):
        monkeypatch.setattr(f"{module}.load_settings", lambda: s)
    monkeypatch.setattr(job, "configure_logging", lambda _settings: None)  # keep structlog as pytest has it
    return s


def context(**params: Any) -> dict[str, Any]:
    return {
        "params": {"exchange": "all", "catch_up": True, **params},
        "data_interval_start": HOUR,
        "data_interval_end": HOUR + dt.timedelta(hours=1),
    }


class InProcessHook:
    """The job's entry point run in this process; a non-zero exit raises like the Spark hooks do."""

    def __init__(self, settings: Settings, *, name: str, application: Path, application_args: list[str], nice=0):
        self.args = application_args

    def submit(self) -> None:
        try:
            code = job.main(self.args)
        except Exception:  # a crash: the interpreter would exit 1 with a traceback
            code = 1
        if code != 0:
            raise AirflowException(f"job exited with code {code}")

    def on_kill(self) -> None:
        pass


class FakeFrame:
    def persist(self, *_args: Any) -> FakeFrame:
        return self


@pytest.fixture
def medallion(settings: Settings, monkeypatch: pytest.MonkeyPatch):
    from k2.airflow.operators.medallion import MedallionOperator

    monkeypatch.setattr("k2.airflow.hooks.spark_connect.spark_job_hook", InProcessHook)
    monkeypatch.setattr("k2.spark.batch_session", lambda *_args: type("Spark", (), {"stop": lambda self: None})())
    return MedallionOperator(task_id="silver", layer="silver", exchange="binance")


def test_a_critical_quality_failure_fails_the_task_for_good_with_one_alert(medallion, monkeypatch) -> None:
    alerts: list[tuple[str, str]] = []
    failing = QualityReport("silver", "binance", "r", 20, [Finding("expect_price_positive", "critical", "3 rows")])
    monkeypatch.setattr("k2.quality.validate", lambda *_args, **_kw: failing)
    monkeypatch.setattr("k2.monitoring.alerts.send_alert", lambda level, source, _msg: alerts.append((level, source)))

    def run_through_the_real_gate(spark, settings, layer, interval, gate=None, *, catch_up=False):
        job.quality_gate(settings)(layer, FakeFrame(), interval)

    monkeypatch.setattr(job, "run", run_through_the_real_gate)
    with pytest.raises(AirflowFailException) as failed:
        medallion.execute(context())
    assert "quality failure (not retried)" in str(failed.value) and "expect_price_positive" in str(failed.value)
    assert "nothing was published" in str(failed.value)  # the gate's fix travels with it
    assert alerts == [("critical", "quality silver.binance")]
    # the DAG's failure callback then sees the task's failure: it adds no second alert
    from k2.airflow.notifiers.alerts import K2AlertNotifier

    K2AlertNotifier().notify({"exception": failed.value})
    assert alerts == [("critical", "quality silver.binance")]
    K2AlertNotifier().notify({"exception": AirflowFailException("start is not a date")})  # not alerted yet
    assert alerts[1:] == [("critical", "?")]


def test_a_crash_stays_an_ordinary_failure_that_airflow_retries(medallion, monkeypatch) -> None:
    def crash(*_args: Any, **_kw: Any) -> None:
        raise RuntimeError("catalog unreachable")

    monkeypatch.setattr(job, "run", crash)
    with pytest.raises(AirflowException) as failed:
        medallion.execute(context())
    assert not isinstance(failed.value, AirflowFailException)


def test_the_job_reports_bad_parameters_as_a_failure_for_good(settings: Settings, tmp_path: Path) -> None:
    report = tmp_path / "report.json"
    interval = ["--start", "2026-11-20T10:00:00Z", "--end", "2026-11-20T11:00:00Z"]
    code = job.main(["--layer", "gold", "--exchange", "bitstamp", *interval, "--report", str(report)])
    assert code == EXIT_FAILED_FOR_GOOD
    failure = JobFailure.found_in(report)
    assert failure is not None and failure.failure == "parameters" and "bitstamp" in failure.cause and failure.fix


def test_a_report_is_not_mistaken_for_a_failure(tmp_path: Path) -> None:
    from k2.medallion.reports import GoldReport

    GoldReport("binance", "a", "b").write(tmp_path / "report.json")
    assert JobFailure.found_in(tmp_path / "report.json") is None
    assert JobFailure.found_in(tmp_path / "missing.json") is None


@pytest.mark.parametrize(
    ("params", "named"),
    [
        ({"start": "yesterday", "end": "2026-11-20T11:00:00Z"}, "start='yesterday' is not a date-time"),
        ({"start": "2026-11-20T11:00:00Z", "end": "2026-11-20T10:00:00Z"}, "is not before end"),
        ({"start": "2026-11-01T00:00:00Z", "end": "2026-11-09T00:00:00Z"}, "K2_BATCH_MAX_MANUAL_INTERVAL_H=168"),
    ],
)
def test_wrong_parameters_fail_every_task_for_good(settings: Settings, medallion, params, named) -> None:
    from k2.airflow.intervals import validate_run_params

    with pytest.raises(AirflowFailException, match=named):
        validate_run_params(params)
    with pytest.raises(AirflowFailException, match=named):
        medallion.execute(context(**params))


def test_an_unknown_exchange_fails_for_good_and_another_exchange_skips(settings: Settings) -> None:
    from k2.airflow.intervals import run_interval, validate_run_params

    with pytest.raises(AirflowFailException, match="exchange='bitstamp'"):
        validate_run_params({"exchange": "bitstamp"})
    with pytest.raises(AirflowFailException, match="exchange='bitstamp'"):
        run_interval(context(), "bitstamp")
    with pytest.raises(AirflowSkipException):
        run_interval(context(exchange="kraken"), "binance")


def test_the_manual_interval_limit_names_both_fixes(settings: Settings) -> None:
    from k2.airflow.intervals import validate_run_params

    within = validate_run_params({"start": "2026-11-01T00:00:00Z", "end": "2026-11-08T00:00:00Z"})  # 168 h
    assert "binance/2026-11-01T00:00..2026-11-08T00:00" in within
    with pytest.raises(AirflowFailException) as failed:
        validate_run_params({"start": "2026-11-01T00:00:00Z", "end": "2026-11-08T00:00:01Z"})
    assert "trigger several runs" in str(failed.value) and "raise K2_BATCH_MAX_MANUAL_INTERVAL_H" in str(failed.value)


def test_an_unknown_maintenance_namespace_fails_for_good(settings: Settings) -> None:
    from k2.airflow.operators.maintenance import IcebergMaintenanceOperator

    with pytest.raises(AirflowFailException, match="namespace='platinum'"):
        IcebergMaintenanceOperator(task_id="maintain", namespace="platinum").execute({})
