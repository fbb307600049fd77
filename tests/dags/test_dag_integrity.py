"""DAG integrity: every DAG imports, has no cycle, is documented and owned, parses fast, and
keeps heavy libraries out of module level (they load inside tasks only)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from k2.resources import DAGS_DIR as DAGS

PARSE_CPU_BUDGET_S = 0.5


@pytest.fixture(scope="module")
def report(tmp_path_factory: pytest.TempPathFactory) -> dict:
    home = tmp_path_factory.mktemp("airflow")
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith(("AIRFLOW", "K2_"))},
        "AIRFLOW_HOME": str(home),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "AIRFLOW__CORE__DAGS_FOLDER": str(DAGS),
        "K2_HOME": str(home / "k2"),
    }
    result = subprocess.run(
        [sys.executable, str(Path(__file__).with_name("inspect_dags.py")), str(DAGS)],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    return json.loads(result.stdout.strip().splitlines()[-1])


def test_every_dag_file_imports(report: dict) -> None:
    assert report["import_errors"] == {}
    assert set(report["files"]) == {p.name for p in DAGS.glob("*.py")}
    assert report["dags"], "no DAGs found"


def test_one_supervisor_dag_per_exchange_checking_at_once_and_briefly(report: dict) -> None:
    supervisors = {d: info for d, info in report["dags"].items() if d.startswith("k2_bronze_stream_")}
    assert set(supervisors) == {"k2_bronze_stream_binance", "k2_bronze_stream_kraken"}
    for info in supervisors.values():
        assert info["first_run_in_s"] <= 1, "a stream waits for its first check after `k2 up`"
        assert info["execution_timeout_s"] == {"reconcile": 120.0}  # a hung check never holds the next back


def test_no_cycles(report: dict) -> None:
    assert [d for d, info in report["dags"].items() if info["has_cycle"]] == []


def test_every_dag_is_owned_tagged_retried_and_described(report: dict) -> None:
    for dag_id, info in report["dags"].items():
        assert info["description"], f"{dag_id} has no description"
        assert info["tags"], f"{dag_id} has no tags"
        assert info["owners"] and "airflow" not in info["owners"], f"{dag_id} has no owner"
        assert info["task_count"] > 0
        assert all(r >= 1 for r in info["retries"]), f"{dag_id} has tasks without retries"


def test_dag_files_parse_fast(report: dict) -> None:
    slow = {f: round(s["parse_cpu_s"], 3) for f, s in report["files"].items() if s["parse_cpu_s"] > PARSE_CPU_BUDGET_S}
    assert slow == {}, f"DAG files taking over {PARSE_CPU_BUDGET_S} s of CPU to parse: {slow}"


def test_dag_files_do_not_import_heavy_libraries(report: dict) -> None:
    heavy = {f: s["heavy_modules"] for f, s in report["files"].items() if s["heavy_modules"]}
    assert heavy == {}, f"DAG files import heavy modules at module level: {heavy}"


def test_the_heavy_import_check_catches_a_violation(tmp_path: Path) -> None:
    """The inspector itself: a DAG file importing pyspark at module level is reported."""
    (tmp_path / "bad_dag.py").write_text(
        "import pyspark\nfrom datetime import datetime\nfrom airflow.sdk import DAG\n"
        "with DAG('bad', schedule=None, start_date=datetime(2026, 1, 1), description='x', tags=['t']):\n"
        "    pass\n"
    )
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("AIRFLOW")},
        "AIRFLOW_HOME": str(tmp_path / "home"),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
    }
    result = subprocess.run(
        [sys.executable, str(Path(__file__).with_name("inspect_dags.py")), str(tmp_path)],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert json.loads(result.stdout.strip().splitlines()[-1])["files"]["bad_dag.py"]["heavy_modules"] == ["pyspark"]


def test_every_spark_task_has_the_execution_timeout_of_its_setting(report: dict) -> None:
    from k2.settings import Settings

    defaults = Settings.from_env({})  # the inspector parses the DAGs without K2_* variables
    expected = {
        "MedallionOperator": defaults.batch.execution_timeout_min * 60,
        "IcebergMaintenanceOperator": defaults.maintenance.execution_timeout_min * 60,
    }
    timeouts = {
        f"{dag_id}.{task}": (operator, info["execution_timeout_s"][task])
        for dag_id, info in report["dags"].items()
        for task, operator in info["operators"].items()
        if operator in expected
    }
    assert set(timeouts) == {
        *(f"k2_medallion.{ex}.{layer}" for ex in defaults.exchanges for layer in ("silver", "gold")),
        *(f"k2_maintenance.maintain_{ns}" for ns in ("bronze", "silver", "gold", "ops")),
    }
    wrong = {task: t for task, (operator, t) in timeouts.items() if t != expected[operator]}
    assert wrong == {}, f"Spark tasks without K2's execution timeout: {wrong}"


@pytest.mark.parametrize("name", ["start", "end"])
def test_the_trigger_form_refuses_an_interval_bound_that_is_no_date_time(report: dict, name: str) -> None:
    from airflow.sdk import Param
    from airflow.sdk.exceptions import ParamValidationError

    schema = report["dags"]["k2_medallion"]["param_schemas"][name]
    assert schema["format"] == "date-time"  # the trigger form shows a date-time picker
    for good in (None, "2026-11-20T13:00:00Z", "2026-11-20T13:00:00.000Z", "2026-11-20T13:00:00.123456+00:00"):
        assert Param(None, schema=schema).resolve(good) == good
    for bad in ("yesterday", "2026-11-20", "2026-11-20T13:00", "20/11/2026 13:00", "2026-11-20T13:00:00"):
        with pytest.raises(ParamValidationError):
            Param(None, schema=schema).resolve(bad)


def test_every_exchange_ends_its_medallion_group_with_a_gap_repair_task(report: dict) -> None:
    from k2.settings import Settings

    defaults = Settings.from_env({})
    info = report["dags"]["k2_medallion"]
    for exchange in defaults.exchanges:
        task = f"{exchange}.repair_gaps"
        assert info["operators"][task] == "GapRepairOperator"
        assert info["execution_timeout_s"][task] == defaults.gaps_repair.execution_timeout_min * 60


def test_maintenance_first_runs_at_its_next_daily_time_not_when_unpaused(report: dict) -> None:
    # `k2 up` unpauses it: a run at once would compete with the first batch run for the Spark runtime
    first = report["dags"]["k2_maintenance"]["first_run_in_s"]
    assert first is not None and 0 < first <= 86_400
    assert report["dags"]["k2_medallion"]["first_run_in_s"] <= 0  # the batch's first run comes at once
