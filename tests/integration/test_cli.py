"""The `k2` command as a user runs it: a separate process configured only by K2_* variables."""

from __future__ import annotations

import os
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import psutil
import pytest

from k2.lake.tables import all_tables
from tests.conftest import make_settings
from tests.helpers import free_port

pytestmark = pytest.mark.integration


def run_k2(*args: str, env: dict[str, str], timeout: float = 300) -> subprocess.CompletedProcess:
    base = {k: v for k, v in os.environ.items() if not k.startswith("K2_")}
    return subprocess.run(
        [sys.executable, "-m", "k2.cli", *args],
        env={**base, **env},
        text=True,
        capture_output=True,
        timeout=timeout,
        check=False,
    )


def test_up_status_down(tmp_path: Path, jars) -> None:
    env = {
        "K2_HOME": str(tmp_path / "home"),
        "K2_KAFKA_PORT": str(free_port()),
        "K2_KAFKA_CONTROLLER_PORT": str(free_port()),
        "K2_SPARK_CONNECT_PORT": str(free_port()),
        "K2_AIRFLOW_PORT": str(free_port()),
        "K2_SPARK_UI_ENABLED": "false",
        "K2_FEED_SIM_RATE": "50",
        "K2_LOG_FORMAT": "logfmt",
    }
    # the first batch run is left out here (minutes of Spark on two cores): the same DAG runs through
    # Airflow in test_medallion_dag.py
    up = run_k2("up", "--no-batch", env=env)
    try:
        assert up.returncode == 0, up.stderr
        lines = [line for line in up.stdout.splitlines() if line.strip()]
        assert lines[0].split()[:4] == ["component", "state", "where", "details"]
        table = {
            " ".join(line.split()[:2]) if line.startswith(("feed", "stream")) else line.split()[0]: line
            for line in lines[2:]
        }
        assert "running (pid" in table["kafka"]
        assert "2/2 present" in table["topics"]
        tables = len(all_tables(make_settings(tmp_path / "home")))  # default exchanges, as k2 up here
        assert f"{tables}/{tables} tables" in up.stdout
        assert "event=airflow.initialised" in up.stderr and "dag_id=k2_monitoring" in up.stderr
        assert "pool k2_spark created 1 slot; pool k2_maintenance created" in up.stderr  # `k2 airflow init`
        assert "running" in table["airflow"] and "password in" in table["airflow"]
        for exchange in ("binance", "kraken"):
            assert "running (pid" in table[f"feed {exchange}"]
            assert "running (pid" in table[f"stream {exchange}"] and "batch " in table[f"stream {exchange}"]
        assert "event=broker.ready" in up.stderr  # structured progress on stderr
        # the batch's warm Spark runtime: on loopback, its token 0600 and on no command line
        assert "batch jobs on Spark Connect 127.0.0.1:" in table["spark"] and "running (pid" in table["spark"]
        token_file = tmp_path / "home" / "run" / "spark-connect.token"
        assert token_file.stat().st_mode & 0o777 == 0o600
        token = token_file.read_text()
        assert len(token) >= 32
        assert not [p.pid for p in psutil.process_iter(["cmdline"]) if token in " ".join(p.info["cmdline"] or [])]
        # the UI and API need a login
        port = env["K2_AIRFLOW_PORT"]
        with pytest.raises(urllib.error.HTTPError) as denied:
            urllib.request.urlopen(f"http://127.0.0.1:{port}/api/v2/dags", timeout=10)
        assert denied.value.code == 401
        # K2's plugin, loaded from its entry point, serves the monitoring figures (or says there are none yet)
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/k2/metrics", timeout=10) as response:
                assert "k2_" in response.read().decode()
        except urllib.error.HTTPError as exc:
            assert exc.code == 503 and "no measurement yet" in exc.read().decode()

        again = run_k2("up", "--no-wait", env=env)  # idempotent: same broker, nothing re-created
        assert again.returncode == 0, again.stderr
        assert "broker.starting" not in again.stderr
        assert "action=created" not in again.stderr
    finally:
        down = run_k2("down", env=env)
    assert down.returncode == 0 and "stopped" in down.stdout
    results = dict(line.split(None, 1) for line in down.stdout.splitlines()[2:] if line.strip())
    assert "stopped" in results["airflow"] and "stopped" in results["kafka"]
    assert results["spark-connect"].strip() == "stopped"
    status = run_k2("kafka", "status", env=env)
    assert status.returncode == 3 and "stopped" in status.stdout
    assert (tmp_path / "home" / "lake" / "catalog.db").is_file()  # down keeps the data


def test_jars_is_a_fast_no_op_when_resolved(jars) -> None:
    # Maven is made unreachable: an up-to-date resolution must not need it
    started = time.monotonic()
    result = run_k2("jars", env={"K2_MAVEN": "/nonexistent/mvn"})
    assert result.returncode == 0, result.stderr
    assert time.monotonic() - started < 10
    assert "spark-connectors" in result.stdout


def test_errors_name_cause_and_fix(tmp_path: Path) -> None:
    result = run_k2("status", env={"K2_KAFKA_PROT": "9092"})
    assert result.returncode == 2
    assert "unknown setting K2_KAFKA_PROT" in result.stderr and "K2_KAFKA_PORT" in result.stderr
    assert "Traceback" not in result.stderr

    reset = run_k2("kafka", "reset", env={"K2_HOME": str(tmp_path)})
    assert reset.returncode == 2 and "--yes" in reset.stderr
