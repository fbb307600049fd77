"""The scale-out form on one machine, by settings only: `k2 up` with K2_POSTGRES_EMBEDDED and the
CeleryExecutor starts K2's PostgreSQL server (the Iceberg catalog and Airflow's metadata DB), a Redis
broker and two Celery workers, each a process of its own, besides the rest of the stack. `k2 status`
shows each; the catalog's tables and Airflow's runs are in PostgreSQL; two k2_medallion runs succeed,
one over an hour holding Bronze rows, so Silver and Gold run on Spark from a Celery worker, and the
workers' own logs show that both of them ran tasks. `k2 down` stops the workers and Redis with Airflow
and PostgreSQL last; the data stays. Neither password is in any output, log or command line."""

from __future__ import annotations

import contextlib
import datetime as dt
import re
import time
from pathlib import Path

import psutil
import pytest

from k2.lake.catalog import load_catalog
from k2.lake.tables import all_tables
from k2.runtime.airflow import AirflowServices
from k2.runtime.airflow_api import AirflowApi
from k2.runtime.postgres import LocalPostgres
from k2.settings import Settings
from tests.helpers import free_port, wait_for
from tests.integration.stream_support import EXCHANGE, mark_stream_idle, write_bronze_ingested
from tests.integration.test_cli import run_k2, stack_env

pytestmark = pytest.mark.integration

PASSWORD_FILES = ("postgres/password", "redis/password", "redis/redis.conf")


def _status(stdout: str) -> dict[str, str]:
    """`k2 status`'s component table, keyed by component (two words for feeds and streams)."""
    rows = {}
    for line in stdout.strip().splitlines()[2:]:
        if not line.strip():
            break  # the streams' own table follows an empty line
        words = line.split()
        key = " ".join(words[:2]) if words[0] in ("feed", "stream", "silver", "iceberg") else words[0]
        rows[key] = line
    return rows


def _executed(log_text: str) -> set[tuple[str, str, str]]:
    """(dag_id, run_id, task_id) of every task a Celery worker's log says it executed."""
    found = set()
    for line in log_text.splitlines():
        if "Executing workload in Celery" in line:
            fields = {k: re.search(rf"{k}='([^']+)'", line) for k in ("dag_id", "run_id", "task_id")}
            if all(fields.values()):
                found.add(tuple(m.group(1) for m in fields.values()))
    return found


@pytest.mark.timeout(900)
def test_k2_up_runs_the_scale_out_form_on_postgresql_and_two_celery_workers(tmp_path: Path, jars) -> None:
    home = tmp_path / "home"
    env = stack_env(
        home,
        K2_EXCHANGES=EXCHANGE,
        K2_SPARK_DRIVER_MEMORY="1g",
        K2_STREAM_DRIVER_MEMORY="768m",
        # the scale-out form: settings only
        K2_POSTGRES_EMBEDDED="true",
        K2_POSTGRES_PORT=str(free_port()),
        K2_AIRFLOW_EXECUTOR="CeleryExecutor",
        K2_AIRFLOW_CELERY_WORKERS="2",
        K2_AIRFLOW_CELERY_CONCURRENCY="2",  # the stream's supervisor holds one slot for as long as it runs
        K2_AIRFLOW_REDIS_PORT=str(free_port()),
    )
    settings = Settings.from_env(env)
    postgres = LocalPostgres(settings)
    airflow = AirflowServices(settings)
    outputs = []
    try:
        started = time.monotonic()
        up = run_k2("up", "--no-feeds", "--no-wait", env=env, timeout=600)
        print(f"k2 up: {time.monotonic() - started:.1f} s")
        outputs.append(up)
        assert up.returncode == 0, up.stderr[-3000:]
        rows = _status(up.stdout)
        port = env["K2_POSTGRES_PORT"]
        assert "running (pid" in rows["postgres"] and f"127.0.0.1:{port}/catalog,airflow" in rows["postgres"]
        assert "running (pid" in rows["redis"] and f"127.0.0.1:{env['K2_AIRFLOW_REDIS_PORT']}" in rows["redis"]
        for n in (1, 2):
            assert "running (pid" in rows[f"celery-worker-{n}"] and f"k2-worker-{n}@" in rows[f"celery-worker-{n}"]
        assert re.search(r"airflow\s+running\s", rows["airflow"]) and "CeleryExecutor" in rows["airflow"]
        tables = {spec.identifier for spec in all_tables(settings)}
        assert f"{len(tables)}/{len(tables)} tables" in rows["iceberg catalog"]
        assert f"postgresql+psycopg2://k2:****@127.0.0.1:{port}/catalog" in rows["iceberg catalog"]

        with postgres.connect("catalog") as conn, conn.cursor() as cur:  # the catalog is in PostgreSQL
            cur.execute("SELECT table_namespace || '.' || table_name FROM iceberg_tables")
            assert tables <= {row[0] for row in cur.fetchall()}
        assert not (home / "lake" / "catalog.db").exists() and not (home / "airflow" / "airflow.db").exists()

        api = AirflowApi(airflow)
        # k2_maintenance is unpaused, but its first run waits for the next 03:30 (no Spark maintenance
        # beside the first batch runs)
        assert airflow.dag_runs("k2_maintenance") == []

        # Bronze rows ingested this hour, after the interval of the run unpausing k2_medallion made (that
        # one settles its hour without Spark): Silver and Gold have work in the first run below only
        now = dt.datetime.now(dt.UTC)
        this_hour = now.replace(minute=0, second=0, microsecond=0)
        ingested = max(now - dt.timedelta(seconds=1), this_hour + dt.timedelta(seconds=3))
        write_bronze_ingested(settings, [(trade, ingested) for trade in range(7000, 7005)])
        end = ingested + dt.timedelta(seconds=1)
        wait_for(lambda: dt.datetime.now(dt.UTC) > end, 10, "the interval's end to pass")
        mark_stream_idle(settings)  # k2 up's supervisor starts the real stream meanwhile: no waiting on it
        two_ago = this_hour - dt.timedelta(hours=2)
        runs = {"scaleout_0": (this_hour, end), "scaleout_1": (two_ago, two_ago + dt.timedelta(hours=1))}
        for run_id, (start, stop) in runs.items():
            conf = {"start": start.isoformat(), "end": stop.isoformat(), "catch_up": False}
            api.trigger("k2_medallion", run_id, conf)

        def finished() -> dict[str, str] | None:
            states = {run_id: api.run_state("k2_medallion", run_id) for run_id in runs}
            return states if all(s in ("success", "failed") for s in states.values()) else None

        states = wait_for(finished, 600, "both k2_medallion runs to finish", interval=2)
        print(f"both runs finished: {time.monotonic() - started:.1f} s")
        logs = {n: (airflow.log_dir / f"celery-worker-{n}.log").read_text(errors="replace") for n in (1, 2)}
        assert states == dict.fromkeys(runs, "success"), {n: text[-3000:] for n, text in logs.items()}

        executed = {n: _executed(text) for n, text in logs.items()}
        ran = {  # every task the scheduler sent to the executor, from Airflow's DB on PostgreSQL
            ("k2_medallion", ti["dag_run_id"], ti["task_id"])
            for run_id in runs
            for ti in api.task_instances("k2_medallion", run_id)
            if ti.get("queued_when")
        }
        spark_tasks = {t for t in ran if t[1] == "scaleout_0" and t[2].startswith(f"{EXCHANGE}.")}
        assert {f"{EXCHANGE}.silver", f"{EXCHANGE}.gold"} <= {t[2] for t in spark_tasks}, sorted(ran)
        assert ran <= executed[1] | executed[2]  # each through a Celery worker, whose log names it
        assert executed[1] and executed[2], executed  # and both workers took tasks
        with postgres.connect("airflow") as conn, conn.cursor() as cur:  # Airflow's tables are on the server
            cur.execute(
                "SELECT dag_id, run_id, task_id FROM task_instance WHERE run_id = ANY(%s) AND queued_dttm IS NOT NULL",
                (list(runs),),
            )
            assert set(cur.fetchall()) == ran

        catalog = load_catalog(settings.lake)
        trades = catalog.load_table("silver.trades").scan(selected_fields=("trade_id",)).to_arrow()
        assert sorted(trades.column("trade_id").to_pylist()) == [str(t) for t in range(7000, 7005)]
        bars = catalog.load_table("gold.ohlcv_1h").scan().to_arrow().to_pylist()
        assert [b["bar_start"] for b in bars] == [this_hour]

        outputs += [run_k2("status", env=env), run_k2("settings", env=env)]
        _assert_passwords_kept(home, postgres.password(), airflow.redis.password(), outputs)
    finally:
        stopping = time.monotonic()
        down = run_k2("down", env=env)
        print(f"k2 down: {time.monotonic() - stopping:.1f} s")
    try:
        assert down.returncode == 0, down.stderr[-2000:]
        results = dict(line.split(None, 1) for line in down.stdout.splitlines()[2:] if line.strip())
        assert "celery-worker-1, celery-worker-2 stopped" in results["airflow"]
        assert results["redis"].strip() == "stopped" and results["postgres"].strip() == "stopped"
        assert list(results)[-1] == "postgres"  # after everything that used it
        assert postgres.pid() is None and airflow.redis.pid() is None
        _assert_passwords_kept(home, postgres.password(), airflow.redis.password(), [down])

        postgres.ensure_running()  # down kept the data: the catalog's tables and the Silver rows
        trades = load_catalog(settings.lake).load_table("silver.trades").scan().to_arrow()
        assert trades.num_rows == 5
    finally:
        postgres.reset()  # as root its data directory is outside tmp_path


def _assert_passwords_kept(home: Path, pg_password: str, redis_password: str, outputs: list) -> None:
    """Neither password in any command's output, any file under K2_HOME but its own 0600 files and
    the spark-submit properties files (0600), nor on any command line on this machine."""
    for name in PASSWORD_FILES:
        assert (home / name).stat().st_mode & 0o777 == 0o600, name
    allowed = {home / name for name in PASSWORD_FILES} | set((home / "run" / "spark").glob("*.properties"))
    assert all(p.stat().st_mode & 0o777 == 0o600 for p in allowed)
    texts = {f"output of k2 {' '.join(o.args[3:])}": o.stdout + o.stderr for o in outputs}
    for path in home.rglob("*"):
        if path.is_file() and path not in allowed and path.suffix not in (".parquet", ".avro"):
            texts[str(path)] = path.read_bytes().decode(errors="replace")
    for proc in psutil.process_iter():
        with contextlib.suppress(psutil.Error):
            texts[f"command line of pid {proc.pid} ({proc.name()})"] = " ".join(proc.cmdline())
    assert len(texts) > 20
    secrets = {"postgres": pg_password, "redis": redis_password}
    leaks = sorted({(name, where) for name, value in secrets.items() for where, text in texts.items() if value in text})
    assert not leaks, f"passwords found outside their 0600 files: {leaks}"
