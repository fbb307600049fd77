"""The `k2` command as a user runs it: a separate process configured only by K2_* variables."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import urllib.error
import urllib.request
from pathlib import Path

import psutil
import pytest

from k2 import dag_ids
from k2.lake.catalog import load_catalog
from k2.lake.names import SILVER_TRADES_ID, bronze_id, gold_id
from k2.lake.tables import all_tables
from k2.query.live.protocol import ask
from k2.runtime import procs
from k2.runtime.stack import query_server_pid_file
from k2.settings import Settings, is_loopback
from k2.streams.control import stream_control
from tests.conftest import make_settings
from tests.helpers import free_port, wait_for

pytestmark = pytest.mark.integration


def stack_env(home: Path, **settings: str) -> dict[str, str]:
    """The environment of a `k2 up` of its own: its state directory, free loopback ports, no Spark UI,
    logfmt logs; ``settings`` add or override K2_* variables."""
    return {
        "K2_HOME": str(home),
        "K2_KAFKA_PORT": str(free_port()),
        "K2_KAFKA_CONTROLLER_PORT": str(free_port()),
        "K2_SPARK_CONNECT_PORT": str(free_port()),
        "K2_AIRFLOW_PORT": str(free_port()),
        "K2_AIRFLOW_LOG_SERVER_PORT": str(free_port()),
        "K2_SPARK_UI_ENABLED": "false",
        "K2_LOG_FORMAT": "logfmt",
        **settings,
    }


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


@pytest.mark.timeout(1200)  # two `k2 up`s: 5-6 minutes alone, up to 11 beside the other worker's tests
def test_up_status_down(tmp_path: Path, jars) -> None:
    env = stack_env(tmp_path / "home", K2_FEED_SIM_RATE="50", **SENTINEL_SECRETS)
    up = run_k2("up", env=env, timeout=900)
    try:
        assert up.returncode == 0, up.stderr
        # its first batch run found this session's trades: it waited for the streams' first commits
        # (a stream that runs may not have committed yet), so a new user sees Silver and Gold at once
        assert "event=batch.finished" in up.stderr and "state=success" in up.stderr
        assert "streams.no_rows_yet" not in up.stderr
        # the batch server read Bronze and Silver once while the streams committed their first rows
        assert "event=spark_connect.warmed_up" in up.stderr, up.stderr
        # the feeds started once the streams ran: no record waited out a stream's JVM start (whether
        # monitoring then opens a latency incident depends on the machine's speed: see the README)
        assert (tmp_path / "home" / "monitoring" / "latest.json").is_file()  # monitoring measured
        catalog = load_catalog(Settings.from_env(env).lake)
        for exchange in ("binance", "kraken"):
            started = stream_control(Settings.from_env(env), exchange).read("status")["started_at"]
            stamps = catalog.load_table(bronze_id(exchange)).scan(selected_fields=("kafka_timestamp",)).to_arrow()
            first = min(stamps.column("kafka_timestamp").to_pylist())
            assert first.timestamp() > started, (exchange, first, started)
        silver = catalog.load_table(SILVER_TRADES_ID).scan(selected_fields=("exchange",)).to_arrow()
        bars = catalog.load_table(gold_id("1m")).scan(selected_fields=("exchange", "trade_count")).to_arrow()
        assert set(silver.column("exchange").to_pylist()) == {"binance", "kraken"}
        assert set(bars.column("exchange").to_pylist()) == {"binance", "kraken"}
        assert sum(bars.column("trade_count").to_pylist()) == silver.num_rows  # every Silver trade in a bar
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
        # the query server followed both topics since the feeds started: a query's unprocessed part
        # comes from the records it judged on arrival
        assert "running (pid" in table["query"] and table["query"].count(", caught up") == 2, table["query"]
        served = run_k2("query", "trades", "--since", "30m", "--format", "csv", env=env)
        assert served.returncode == 0 and len(served.stdout.splitlines()) > 1, served.stderr
        settings = Settings.from_env(env)
        answered = ask(settings, {"op": "status"})[1]["answered"]
        assert answered == {"live": 2, "local": 0}, answered  # one per exchange, none judged at query time
        # killed, the server is started again by the next query, which is answered without it meanwhile
        server_pid = procs.running_pid(query_server_pid_file(settings))
        os.kill(server_pid, signal.SIGKILL)
        wait_for(lambda: procs.running_pid(query_server_pid_file(settings)) is None, 30, "the server to die")
        meanwhile = run_k2("query", "trades", "--since", "30m", "--format", "csv", env=env)
        assert meanwhile.returncode == 0 and len(meanwhile.stdout.splitlines()) > 1, meanwhile.stderr
        assert "query_server.restarting" in meanwhile.stderr
        wait_for(lambda: procs.running_pid(query_server_pid_file(settings)), 30, "the query server to start again")
        # serving again (its catching up is the same as at `k2 up`, checked above)
        wait_for(lambda: ask(settings, {"op": "status"}) is not None, 60, "the restarted query server to answer")
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
        # K2's plugin, loaded from its entry point, serves the monitoring figures (or says there are none
        # yet) to a scraper holding the scrape token, and to nobody without it
        with pytest.raises(urllib.error.HTTPError) as anonymous:
            urllib.request.urlopen(f"http://127.0.0.1:{port}/k2/metrics", timeout=10)
        assert anonymous.value.code == 401
        scrape = (tmp_path / "home" / "monitoring" / "scrape.token").read_text()
        metrics = urllib.request.Request(
            f"http://127.0.0.1:{port}/k2/metrics", headers={"Authorization": f"Bearer {scrape}"}
        )
        try:
            with urllib.request.urlopen(metrics, timeout=10) as response:
                assert "k2_" in response.read().decode()
        except urllib.error.HTTPError as exc:
            assert exc.code == 503 and "no measurement yet" in exc.read().decode()

        # the streams were started by their supervisor DAG's scheduled checks, each run one check
        for exchange in ("binance", "kraken"):
            runs = tmp_path / "home" / "logs" / "airflow" / "tasks" / f"dag_id={dag_ids.bronze_stream(exchange)}"
            checks = [log.read_text(errors="replace") for log in runs.rglob("task_id=reconcile/attempt=1.log")]
            assert len(checks) >= 2 and sum("action=start" in check for check in checks) == 1, checks

        again = run_k2("up", "--no-wait", env=env)  # idempotent: same broker, nothing re-created
        assert again.returncode == 0, again.stderr
        assert "broker.starting" not in again.stderr
        assert "action=created" not in again.stderr

        home = tmp_path / "home"
        assert_no_wildcard_listeners(home)
        outputs = [up, again, run_k2("status", env=env), run_k2("settings", env=env)]
        assert_secrets_kept(home, outputs)
    finally:
        down = run_k2("down", env=env)
    assert down.returncode == 0 and "stopped" in down.stdout
    results = dict(line.split(None, 1) for line in down.stdout.splitlines()[2:] if line.strip())
    assert "stopped" in results["airflow"] and "stopped" in results["kafka"]
    assert results["query"].split() == ["server", "stopped"]
    assert results["spark-connect"].strip() == "stopped"
    status = run_k2("kafka", "status", env=env)
    assert status.returncode == 3 and "stopped" in status.stdout
    assert (tmp_path / "home" / "lake" / "catalog.db").is_file()  # down keeps the data

    # up again on the same state, topics quiet: the streams restart from their checkpoints with
    # nothing to commit, and readiness comes from their own state, not from data arriving
    try:
        quiet = run_k2("up", "--no-feeds", "--no-batch", env=env)
        assert quiet.returncode == 0, quiet.stderr
        rows = [line.split(None, 2) for line in quiet.stdout.splitlines()]
        restarted = {row[1]: row[2] for row in rows if len(row) == 3 and row[0] == "stream" and row[1] != "state"}
        assert sorted(restarted) == ["binance", "kraken"]
        assert all(line.startswith("running (pid") for line in restarted.values()), quiet.stdout
        assert not [line for line in quiet.stdout.splitlines() if line.startswith("feed ") and "running" in line]
    finally:
        assert run_k2("down", env=env).returncode == 0


# every secret setting set to a value that must never show outside the environment and 0600 files
SENTINEL_SECRETS = {
    "K2_ALERT_WEBHOOK_URL": "https://hooks.invalid/services/SENTINEL-WEBHOOK-7c1d",
    "K2_ALERT_SMTP_PASSWORD": "SENTINEL-SMTP-PASSWORD-5b2e",
    "K2_CATALOG_CREDENTIAL": "k2-client:SENTINEL-CATALOG-CREDENTIAL-9a4f",
    "K2_S3_SECRET_ACCESS_KEY": "SENTINEL-S3-SECRET-3e8d",
}
# where K2 keeps secrets on purpose: each is checked to be 0600
SECRET_FILES = ("airflow/passwords.json", "airflow/secrets.json", "run/spark-connect.token", "monitoring/scrape.token")


def k2_processes(home: Path) -> list[psutil.Process]:
    """Every process started for this K2_HOME (they all carry it in their environment)."""
    found = []
    for proc in psutil.process_iter():
        with contextlib.suppress(psutil.Error):
            if proc.environ().get("K2_HOME") == str(home):
                found.append(proc)
    return found


def listening(proc: psutil.Process) -> set[tuple[int, str, str, int]]:
    """The process's listening sockets; none once it has exited (a short-lived child, such as an
    Airflow task's, can end between being listed and being looked at)."""
    try:
        name, connections = proc.name(), proc.net_connections(kind="inet")
    except psutil.NoSuchProcess:
        return set()
    return {(proc.pid, name, c.laddr.ip, c.laddr.port) for c in connections if c.status == psutil.CONN_LISTEN}


def assert_no_wildcard_listeners(home: Path) -> None:
    listeners = {entry for proc in k2_processes(home) for entry in listening(proc)}
    assert len(listeners) >= 4  # broker, Airflow API server, log server, Spark Connect at least
    exposed = {entry for entry in listeners if not is_loopback(entry[2])}
    assert not exposed, f"K2 processes listening beyond loopback: {exposed}"


def assert_secrets_kept(home: Path, outputs: list[subprocess.CompletedProcess]) -> None:
    for name in SECRET_FILES:
        assert (home / name).stat().st_mode & 0o777 == 0o600, name
    generated = json.loads((home / "airflow" / "secrets.json").read_text())
    password = json.loads((home / "airflow" / "passwords.json").read_text())["admin"]
    secrets = {
        **SENTINEL_SECRETS,
        **{f"generated {key}": value for key, value in generated.items()},
        "admin password": password,
        "spark connect token": (home / "run" / "spark-connect.token").read_text(),
        "metrics scrape token": (home / "monitoring" / "scrape.token").read_text(),
    }
    allowed = {home / name for name in SECRET_FILES}
    texts = {f"output of k2 {' '.join(o.args[3:])}": o.stdout + o.stderr for o in outputs}
    for path in home.rglob("*"):
        if path.is_file() and path not in allowed and path.suffix not in (".parquet", ".avro"):
            texts[str(path)] = path.read_bytes().decode(errors="replace")
    for proc in k2_processes(home):
        with contextlib.suppress(psutil.Error):
            texts[f"command line of pid {proc.pid}"] = " ".join(proc.cmdline())
    assert len(texts) > 20
    leaks = sorted({(name, where) for name, value in secrets.items() for where, text in texts.items() if value in text})
    assert not leaks, f"secrets found outside their 0600 files: {leaks}"


def test_jars_is_a_fast_no_op_when_resolved(jars) -> None:
    # Maven is made unreachable: an up-to-date resolution must not need it, nor build the class archive
    result = run_k2("jars", env={"K2_MAVEN": "/nonexistent/mvn"})
    assert result.returncode == 0, result.stderr
    assert "class_archive.building" not in result.stderr
    assert "spark-connectors" in result.stdout


def test_errors_name_cause_and_fix(tmp_path: Path) -> None:
    result = run_k2("status", env={"K2_KAFKA_PROT": "9092"})
    assert result.returncode == 2
    assert "unknown setting K2_KAFKA_PROT" in result.stderr and "K2_KAFKA_PORT" in result.stderr
    assert "Traceback" not in result.stderr

    reset = run_k2("kafka", "reset", env={"K2_HOME": str(tmp_path)})
    assert reset.returncode == 2 and "--yes" in reset.stderr
