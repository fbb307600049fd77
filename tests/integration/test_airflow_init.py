"""`k2 airflow init` against a real Airflow metadata database (SQLite, migrated by Airflow itself):
K2's pools and variable created, aligned with the settings on a re-run, an operator's value kept,
and an unmigrated database refused with the fix."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.integration

BIN = Path(sys.executable).parent


def run(tool: str, *args: str, env: dict[str, str], cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [str(BIN / tool), *args], env=env, cwd=cwd, capture_output=True, text=True, timeout=180, check=False
    )


def rows(output: str) -> dict[tuple[str, str], str]:
    """(kind, name) -> action from `k2 airflow init`'s table."""
    lines = output.strip().splitlines()[2:]  # header and rule
    return {(ln.split()[0], ln.split()[1]): ln.split(None, 3)[2] for ln in lines}


def pools(env: dict[str, str], cwd: Path) -> dict[str, int]:
    listed = run("airflow", "pools", "list", "-o", "json", env=env, cwd=cwd)
    assert listed.returncode == 0, listed.stderr[-2000:]
    return {p["pool"]: int(p["slots"]) for p in json.loads(listed.stdout)}


def fresh_airflow(tmp_path: Path) -> dict[str, str]:
    """An environment naming an Airflow and a K2 state directory of their own, nothing of the caller's."""
    return {
        **{k: v for k, v in os.environ.items() if not k.startswith(("AIRFLOW", "K2_"))},
        "AIRFLOW_HOME": str(tmp_path / "airflow"),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "K2_HOME": str(tmp_path / "k2"),
    }


@pytest.mark.timeout(300)
def test_init_creates_and_aligns_pools_and_variables_idempotently(tmp_path: Path) -> None:
    env = fresh_airflow(tmp_path)
    refused = run("k2", "airflow", "init", env=env, cwd=tmp_path)
    assert refused.returncode == 2
    assert "cannot write to Airflow's metadata database sqlite:///" in refused.stderr
    assert "run `airflow db migrate`" in refused.stderr

    migrated = run("airflow", "db", "migrate", env=env, cwd=tmp_path)
    assert migrated.returncode == 0, migrated.stderr[-2000:]
    first = run("k2", "airflow", "init", env=env, cwd=tmp_path)
    assert first.returncode == 0, first.stderr[-2000:]
    assert rows(first.stdout) == {
        ("pool", "k2_spark"): "created",
        ("pool", "k2_maintenance"): "created",
        ("variable", "k2_alert_thresholds"): "created",
        ("connection", "k2_spark_connect"): "not",  # "not stored": derived from the settings at run time
        ("secret", "k2_metrics_scrape_token"): "created",  # what Prometheus presents to /k2/metrics
    }
    token_file = tmp_path / "k2" / "monitoring" / "scrape.token"
    assert token_file.stat().st_mode & 0o777 == 0o600
    assert token_file.read_text() not in first.stdout + first.stderr
    assert {"k2_spark": 1, "k2_maintenance": 1}.items() <= pools(env, tmp_path).items()

    again = run("k2", "airflow", "init", env=env, cwd=tmp_path)
    assert set(rows(again.stdout).values()) == {"unchanged", "kept", "not"}

    # an operator's thresholds survive; new slots from the settings are applied
    custom = json.dumps({"latency_p99_s": {"warning": 20}})
    assert run("airflow", "variables", "set", "k2_alert_thresholds", custom, env=env, cwd=tmp_path).returncode == 0
    resized = run("k2", "airflow", "init", env={**env, "K2_SPARK_POOL_SLOTS": "3"}, cwd=tmp_path)
    assert rows(resized.stdout)[("pool", "k2_spark")] == "updated"
    assert pools(env, tmp_path)["k2_spark"] == 3
    value = run("airflow", "variables", "get", "k2_alert_thresholds", env=env, cwd=tmp_path).stdout
    assert json.loads(value.strip().splitlines()[-1]) == json.loads(custom)

    # a remote Spark Connect server's token never shows in the report
    remote = {**env, "K2_SPARK_CONNECT": "sc://spark.internal:15002/;token=s3cr3t-t0ken"}
    report = run("k2", "airflow", "init", env=remote, cwd=tmp_path).stdout
    assert "token=****" in report and "s3cr3t-t0ken" not in report

    # a deployment that runs spark-submit and defines the connection itself: init names it as kept
    defined = {**env, "K2_SPARK_CONNECT": "off", "AIRFLOW_CONN_K2_SPARK": "spark://spark-master:7077"}
    assert rows(run("k2", "airflow", "init", env=defined, cwd=tmp_path).stdout)[("connection", "k2_spark")] == "kept"


@pytest.mark.timeout(300)
def test_init_with_migrate_prepares_a_new_database_in_one_process(tmp_path: Path) -> None:
    # what `k2 up` runs: `airflow db migrate` and the init in one process
    env = fresh_airflow(tmp_path)
    prepared = run("k2", "airflow", "init", "--migrate", env=env, cwd=tmp_path)
    assert prepared.returncode == 0, prepared.stderr[-2000:]
    assert rows(prepared.stdout)[("pool", "k2_spark")] == "created"
    assert {"k2_spark": 1, "k2_maintenance": 1}.items() <= pools(env, tmp_path).items()
    again = run("k2", "airflow", "init", "--migrate", env=env, cwd=tmp_path)  # a migrated DB: nothing to do
    assert again.returncode == 0 and rows(again.stdout)[("pool", "k2_spark")] == "unchanged", again.stderr[-2000:]
