"""Airflow in its scale-out form on one machine: the metadata DB and the Iceberg catalog on a real
PostgreSQL server (k2.runtime.postgres), the CeleryExecutor with a Redis broker (k2.runtime.redis)
and two Celery workers, each a process of its own, all started by K2's Airflow runtime as `k2 up`
does. Two k2_medallion runs (both exchanges, hours without Bronze data: the sensors settle them in
ops.medallion_ledger, on the PostgreSQL catalog, without Spark) succeed, and their tasks ran on both
workers, as the workers' own logs show."""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Iterator
from pathlib import Path

import pytest

from k2.lake.catalog import load_catalog
from k2.lake.tables import all_tables, ensure_tables
from k2.runtime.airflow import AirflowServices
from k2.runtime.airflow_api import AirflowApi
from k2.runtime.postgres import LocalPostgres
from k2.settings import Settings
from k2.streams.state import StreamPaths
from tests.helpers import free_port, wait_for
from tests.integration.stream_support import isolated_installation

pytestmark = pytest.mark.integration

EXCHANGES = ("binance", "kraken")


@pytest.fixture
def celery_airflow(postgres: LocalPostgres, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Settings]:
    settings = isolated_installation(
        tmp_path / "home",
        free_port(),
        free_port(),
        monkeypatch,
        K2_EXCHANGES=",".join(EXCHANGES),
        K2_CATALOG_URI=postgres.uri("catalog"),
        K2_AIRFLOW_DB_URI=postgres.uri("airflow"),
        K2_AIRFLOW_EXECUTOR="CeleryExecutor",
        K2_AIRFLOW_CELERY_WORKERS="2",
        K2_AIRFLOW_CELERY_CONCURRENCY="1",  # one task at a time each: parallel tasks need both workers
        K2_AIRFLOW_REDIS_PORT=str(free_port()),
    )
    ensure_tables(load_catalog(settings.lake), all_tables(settings))
    airflow = AirflowServices(settings)
    try:
        airflow.start()
        yield settings
    finally:
        airflow.stop()


def _idle_stream(settings: Settings, exchange: str) -> None:
    """What an idle Bronze stream's listener writes after each trigger that found no data: the
    batch's sensor then knows Bronze holds everything ingested before now (k2.medallion.settle)."""
    paths = StreamPaths.of(settings, exchange)
    paths.idle.parent.mkdir(parents=True, exist_ok=True)
    now = dt.datetime.now(dt.UTC)
    paths.idle.write_text(f'{{"idle_at": {now.timestamp()}, "trigger_at": "{now.isoformat()}", "query_id": "t"}}')


@pytest.mark.timeout(600)
def test_k2_medallion_runs_on_two_celery_workers_over_postgresql(
    celery_airflow: Settings, postgres: LocalPostgres
) -> None:
    settings = celery_airflow
    airflow = AirflowServices(settings)
    names = {c.name for c in airflow.status() if c.pid}
    assert {"celery-worker-1", "celery-worker-2", "redis", "scheduler"} <= names
    worker_logs = [airflow.log_dir / f"celery-worker-{n}.log" for n in (1, 2)]
    wait_for(  # both consuming from the broker before any task is queued: neither can take all by starting first
        lambda: all(re.search(r"k2-worker-\d@\S+ ready\.", p.read_text(errors="replace")) for p in worker_logs),
        120,
        "both Celery workers to connect to Redis",
        interval=1,
    )
    for exchange in EXCHANGES:
        _idle_stream(settings, exchange)
    api = AirflowApi(airflow)
    wait_for(lambda: "k2_medallion" in api.dag_ids(), 180, "the DAG processor to register k2_medallion", interval=2)
    api.unpause("k2_medallion")
    hour = dt.datetime.now(dt.UTC).replace(minute=0, second=0, microsecond=0) - dt.timedelta(hours=3)
    runs = {}
    for n in range(2):
        start = hour + dt.timedelta(hours=n)
        runs[f"celery_{n}"] = start
        conf = {"start": start.isoformat(), "end": (start + dt.timedelta(hours=1)).isoformat(), "catch_up": False}
        api.trigger("k2_medallion", f"celery_{n}", conf)

    def finished() -> dict[str, str] | None:
        states = {run_id: api.run_state("k2_medallion", run_id) for run_id in runs}
        return states if all(s in ("success", "failed") for s in states.values()) else None

    states = wait_for(finished, 300, "both k2_medallion runs to finish", interval=2)
    logs = {n: worker_logs[n - 1].read_text(errors="replace") for n in (1, 2)}
    assert states == {run_id: "success" for run_id in runs}, logs

    executed: dict[tuple[str, str], int] = {}  # (run_id, task_id) -> the worker that ran it
    for n, text in logs.items():
        for line in text.splitlines():
            if "Executing workload in Celery" in line:
                task = re.search(r"task_id='([^']+)'", line)
                run = re.search(r"run_id='([^']+)'", line)
                if task and run and run.group(1) in runs:
                    executed[(run.group(1), task.group(1))] = n
    ran = {  # every task the scheduler sent to the executor (not those it skipped) in Airflow's DB on PostgreSQL
        (ti["dag_run_id"], ti["task_id"])
        for run_id in runs
        for ti in api.task_instances("k2_medallion", run_id)
        if ti.get("queued_when")
    }
    expected = {(r, t) for r in runs for t in ("check_params", *(f"{e}.wait_for_bronze" for e in EXCHANGES))}
    assert expected <= ran
    assert set(executed) == ran  # each ran through a Celery worker, and the workers' logs name it
    assert set(executed.values()) == {1, 2}, executed  # and both workers took some

    ledger = load_catalog(settings.lake).load_table("ops.medallion_ledger").scan().to_arrow().to_pylist()
    settled = {(e["exchange"], e["layer"], e["range_start"]) for e in ledger}
    # (unpausing also brought the latest scheduled run, which settles its own hour)
    assert settled >= {(e, layer, start) for e in EXCHANGES for layer in ("silver", "gold") for start in runs.values()}
    secrets = (postgres.password(), airflow.redis.password())
    files = [p for p in settings.logs_dir.rglob("*") if p.is_file()]
    leaked = [p for p in files if any(s in p.read_text(errors="replace") for s in secrets)]
    assert not leaked  # the database's and the broker's passwords are in no log of any component or task
    with postgres.connect("airflow") as conn, conn.cursor() as cur:  # Airflow's tables are on the server
        cur.execute("SELECT count(*) FROM task_instance WHERE dag_id = 'k2_medallion'")
        assert cur.fetchone()[0] >= len(expected)
