"""The scale-out form end to end on one machine, by one setting: `k2 up` with K2_PROFILE=cluster runs
three KRaft brokers (topics with replication 3, min.insync.replicas 2), a Spark master and two workers
(the stream and the Spark Connect server are applications on it), K2's PostgreSQL (the Iceberg catalog
and Airflow's metadata DB), Redis and two Celery workers, each a process of its own. Feeds -> Bronze ->
Silver -> Gold with the gates and monitoring. Under load one Kafka broker (the leader of a partition)
and one Spark worker (the one running the stream's executor) die with SIGKILL: the stream goes on,
Bronze holds every acknowledged Kafka offset once, and Silver holds each trade once. A check on
another host ends the stream's application through the master, and the checks here start it again. `k2 down` stops it
all, PostgreSQL last, and keeps the data; neither password is in any output, log or command line."""

from __future__ import annotations

import contextlib
import datetime as dt
import os
import re
import signal
import time
from pathlib import Path

import psutil
import pytest

from k2.docstore import TABLE
from k2.kafka.groups import bronze_group, group_offsets
from k2.kafka.lag import offsets_consumer
from k2.lake.catalog import load_catalog
from k2.lake.names import SILVER_TRADES_ID
from k2.lake.tables import all_tables
from k2.monitoring.metrics import kafka_lag
from k2.quality.docs import recent_validations
from k2.runtime.airflow import AirflowServices
from k2.runtime.airflow_api import AirflowApi
from k2.runtime.broker import LocalKafka
from k2.runtime.postgres import LocalPostgres
from k2.runtime.spark_cluster import LocalSparkCluster
from k2.settings import Settings
from k2.streams.control import stream_control
from k2.streams.supervisor import StreamSupervisor
from tests.helpers import free_port, free_port_block, wait_for
from tests.integration.stream_support import EXCHANGE, BackgroundFeed, bronze_coordinates, running_job
from tests.integration.test_bronze_streams import end_offsets
from tests.integration.test_cli import assert_no_wildcard_listeners, run_k2, stack_env

pytestmark = pytest.mark.integration

PASSWORD_FILES = ("postgres/password", "redis/password", "redis/redis.conf")
STREAM_APP = f"k2-bronze-{EXCHANGE}"


def _status(stdout: str) -> dict[str, str]:
    """`k2 status`'s component table, keyed by component (two words for feeds and streams)."""
    rows = {}
    for line in stdout.strip().splitlines()[2:]:
        if not line.strip():
            break  # the streams' own table follows an empty line
        words = line.split()
        two = words[0] in ("feed", "stream", "silver", "iceberg", "spark") and words[1] in (
            EXCHANGE,
            "catalog",
            "cluster",
        )
        rows[" ".join(words[:2]) if two else words[0]] = line
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


@pytest.mark.timeout(1200)
def test_the_cluster_profile_runs_the_pipeline_through_a_broker_and_a_worker_killed_under_load(
    tmp_path: Path, jars, request: pytest.FixtureRequest
) -> None:
    from confluent_kafka.admin import AdminClient, ConfigResource

    home = tmp_path / "home"
    kafka_port = free_port_block(3)
    env = stack_env(
        home,
        K2_PROFILE="cluster",  # the one setting; the rest are this test's own ports and a small machine's memory
        K2_EXCHANGES=EXCHANGE,
        K2_KAFKA_PORT=str(kafka_port),
        K2_KAFKA_CONTROLLER_PORT=str(free_port_block(3)),
        K2_SPARK_MASTER_PORT=str(free_port()),
        K2_SPARK_MASTER_UI_PORT=str(free_port()),
        K2_POSTGRES_PORT=str(free_port()),
        K2_AIRFLOW_REDIS_PORT=str(free_port()),
        K2_SPARK_DRIVER_MEMORY="1g",
        K2_STREAM_DRIVER_MEMORY="768m",
    )
    settings = Settings.from_env(env)
    postgres, airflow = LocalPostgres(settings), AirflowServices(settings)
    request.addfinalizer(postgres.reset)  # as root its data directory is outside tmp_path: gone however the test ends
    outputs = []
    try:
        started, up_at = time.monotonic(), dt.datetime.now(dt.UTC)
        up = run_k2("up", "--no-feeds", "--no-wait", env=env, timeout=600)
        print(f"k2 up: {time.monotonic() - started:.1f} s")
        outputs.append(up)
        assert up.returncode == 0, up.stderr[-3000:]
        rows = _status(up.stdout)
        assert "3/3 nodes running" in rows["kafka"]
        assert re.search(r"3/3 nodes running .* 2 workers alive", rows["spark cluster"]), rows["spark cluster"]
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
        assert_no_wildcard_listeners(home)  # brokers, master and workers, PostgreSQL, Redis, Airflow

        topic = settings.topic_for(EXCHANGE)
        admin = AdminClient({"bootstrap.servers": settings.kafka.bootstrap_servers})
        metadata = admin.list_topics(topic, timeout=30)
        assert len(metadata.brokers) == 3
        assert all(len(p.replicas) == 3 for p in metadata.topics[topic].partitions.values())
        (config,) = admin.describe_configs([ConfigResource(ConfigResource.Type.TOPIC, topic)]).values()
        assert config.result(timeout=30)["min.insync.replicas"].value == "2"

        # load; the supervisor's scheduled checks started the stream on the cluster
        window_start = dt.datetime.now(dt.UTC) - dt.timedelta(seconds=5)
        feed = BackgroundFeed(settings, rate=300)
        # the stream's documents are rows in the catalog's database, which every host reaches
        control, cluster, kafka = stream_control(settings, EXCHANGE), LocalSparkCluster(settings), LocalKafka(settings)
        try:
            wait_for(lambda: running_job(control), 300, "the stream's first batch on the cluster", interval=1)
            assert STREAM_APP in cluster.state().applications.values()  # a cluster application, not local mode
            victim_worker = wait_for(lambda: cluster.executor_worker(STREAM_APP), 60, "the executor", interval=1)
            leader = metadata.topics[topic].partitions[0].leader
            victim_node = kafka.nodes[leader - 1]
            os.kill(victim_node.status().pid, signal.SIGKILL)
            cluster.kill_worker(victim_worker)
            killed_at = time.time()
            print(f"killed broker {leader} and spark worker {victim_worker}: {time.monotonic() - started:.1f} s")
            wait_for(lambda: running_job(control, after=killed_at + 10), 300, "Bronze commits after the kills", 1)
            wait_for(lambda: cluster.state().alive_workers == 1, 60, "the master to drop the dead worker", 1)
            survivor = 3 - victim_worker
            wait_for(lambda: cluster.executor_worker(STREAM_APP) == survivor, 60, "the executor moved", interval=1)
        finally:
            summary = feed.finish()
        assert summary.delivery.failed == 0 and summary.delivery.delivered > 0
        assert not victim_node.status().running and sum(n.status().running for n in kafka.nodes) == 2
        ends = end_offsets(settings)
        assert sum(ends.values()) >= summary.delivery.delivered  # every acknowledged record is in Kafka
        wait_for(lambda: len(bronze_coordinates(settings)) >= sum(ends.values()), 300, "Bronze to catch up", 1)
        coords = bronze_coordinates(settings)
        assert len(coords) == len(set(coords)), "a record is in Bronze twice"
        for partition, end in ends.items():
            assert sorted(o for p, o in coords if p == partition) == list(range(end)), f"partition {partition} gap"
        group = offsets_consumer(settings.kafka, bronze_group(EXCHANGE))  # lag any host and Kafka's tools see
        try:
            wait_for(lambda: group_offsets(group, topic) == ends, 60, "the group's offsets to reach the end")
            # a sampler's kept consumer gives monitoring's measure and stays open for the next sample
            assert kafka_lag(settings, EXCHANGE, group, with_age=False) == (0, None)
            assert group_offsets(group, topic) == ends
        finally:
            group.close()
        assert kafka_lag(settings, EXCHANGE) == (0, 0.0)  # monitoring's measure, from those offsets
        with postgres.connect("catalog") as conn, conn.cursor() as cur:
            cur.execute(f"SELECT doc FROM {TABLE} WHERE scope = %s", (f"stream/{EXCHANGE}",))
            assert {"status", "progress", "supervisor", "lease"} <= {row[0] for row in cur.fetchall()}
        assert not (home / "streams" / EXCHANGE / "status.json").exists()
        print(f"Bronze complete ({len(coords)} records): {time.monotonic() - started:.1f} s")

        # the batch on the cluster from the Celery workers: the window of load, and an hour without data
        api = AirflowApi.of(airflow)
        # k2_maintenance is unpaused, but its first run waits for the next 03:30 UTC (no Spark
        # maintenance beside the first batch runs), unless the test spans that time
        next_0330 = up_at.replace(hour=3, minute=30, second=0, microsecond=0)
        next_0330 += dt.timedelta(days=1) if next_0330 <= up_at else dt.timedelta(0)
        assert airflow.dag_runs("k2_maintenance") == [] or dt.datetime.now(dt.UTC) >= next_0330
        window_end = dt.datetime.now(dt.UTC)
        empty_hour = window_start.replace(minute=0, second=0, microsecond=0) - dt.timedelta(hours=2)
        runs = {"cluster_0": (window_start, window_end), "cluster_1": (empty_hour, empty_hour + dt.timedelta(hours=1))}
        for run_id, (start, stop) in runs.items():
            api.trigger(
                "k2_medallion", run_id, {"start": start.isoformat(), "end": stop.isoformat(), "catch_up": False}
            )

        # meanwhile a check on another host judges the stream stalled: the driver's process group is not
        # its own, so it ends the application through the master; the scheduled checks here start it again
        first_app = control.read("status")["spark_app_id"]
        elsewhere = StreamSupervisor(settings, EXCHANGE)
        elsewhere.host = "another-host"
        try:
            assert elsewhere.kill_elsewhere(elsewhere.load_state(), "stalled (a drill)")
        finally:
            elsewhere.close()
        ended_at = time.time()
        assert first_app not in cluster.state().applications

        def finished() -> dict[str, str] | None:
            states = {run_id: api.run_state("k2_medallion", run_id) for run_id in runs}
            return states if all(s in ("success", "failed") for s in states.values()) else None

        states = wait_for(finished, 600, "both k2_medallion runs to finish", interval=2)
        print(f"both runs finished: {time.monotonic() - started:.1f} s")
        logs = {n: (airflow.log_dir / f"celery-worker-{n}.log").read_text(errors="replace") for n in (1, 2)}
        assert states == dict.fromkeys(runs, "success"), {n: text[-3000:] for n, text in logs.items()}

        def restarted() -> dict | None:
            status = control.read("status") or {}
            return status if status.get("state") == "running" and status["started_at"] > ended_at else None

        status = wait_for(restarted, 300, "the scheduled checks to start the stream again", interval=1)
        assert status["spark_app_id"] != first_app and status["spark_app_id"] in cluster.state().applications
        print(f"stream restarted after the master ended it: {time.monotonic() - started:.1f} s")
        silver_report = api.return_value("k2_medallion", "cluster_0", f"{EXCHANGE}.silver")
        # every item new, or already in Silver when the scheduled run of an hour that ended meanwhile
        # took it first (18:00 UTC fell inside this run's window once: all 18,748 were a re-run's)
        new_or_known = silver_report["silver_new"] + silver_report["duplicates_in_silver"]
        assert silver_report["items"] == new_or_known > 0 and silver_report["quality"], silver_report  # gated
        published = recent_validations(settings)  # every gate's, from the catalog's database: any host's view
        assert {f"silver.{EXCHANGE}", f"gold_1m.{EXCHANGE}"} <= {v.suite for v in published if v.page}

        silver = load_catalog(settings.lake).load_table(SILVER_TRADES_ID).scan().to_arrow()
        keys = list(zip(silver["symbol"].to_pylist(), silver["trade_id"].to_pylist(), strict=True))
        assert len(keys) == len(set(keys)), "a trade is in Silver twice"
        # one trade per simulated message (if the test spans an hour's end, the scheduled run takes a part)
        assert len(keys) == len(coords)
        bars = load_catalog(settings.lake).load_table("gold.ohlcv_1m").scan().to_arrow()
        assert sum(bars["trade_count"].to_pylist()) == len(keys)

        executed = {n: _executed(text) for n, text in logs.items()}
        ran = {  # every task the scheduler sent to the executor, from Airflow's DB on PostgreSQL
            ("k2_medallion", ti["dag_run_id"], ti["task_id"])
            for run_id in runs
            for ti in api.task_instances("k2_medallion", run_id)
            if ti.get("queued_when")
        }
        assert {f"{EXCHANGE}.silver", f"{EXCHANGE}.gold"} <= {t[2] for t in ran if t[1] == "cluster_0"}, sorted(ran)
        assert ran <= executed[1] | executed[2]  # each through a Celery worker, whose log names it
        assert executed[1] and executed[2], executed  # and both workers took tasks
        with postgres.connect("airflow") as conn, conn.cursor() as cur:  # Airflow's tables are on the server
            cur.execute(
                "SELECT dag_id, run_id, task_id FROM task_instance WHERE run_id = ANY(%s) AND queued_dttm IS NOT NULL",
                (list(runs),),
            )
            assert set(cur.fetchall()) == ran
            # monitoring ran on the cluster form too, every minute, through the workers
            cur.execute("SELECT count(*) FROM dag_run WHERE dag_id = 'k2_monitoring' AND state = 'success'")
            assert cur.fetchone()[0] >= 1

        outputs += [run_k2("status", env=env), run_k2("settings", env=env)]
        assert re.search(r"K2_PROFILE\s+cluster\s+env\s", outputs[-1].stdout)
        _assert_passwords_kept(home, postgres.password(), airflow.redis.password(), outputs)
    finally:
        stopping = time.monotonic()
        down = run_k2("down", env=env)
        print(f"k2 down: {time.monotonic() - stopping:.1f} s")
    assert down.returncode == 0, down.stderr[-2000:]
    results = dict(line.split(None, 1) for line in down.stdout.splitlines()[2:] if line.strip())
    assert "celery-worker-1, celery-worker-2 stopped" in results["airflow"]
    assert results["redis"].strip() == "stopped" and results["postgres"].strip() == "stopped"
    assert list(results)[-1] == "postgres"  # after everything that used it
    assert postgres.pid() is None and airflow.redis.pid() is None
    assert not any(node.running for node in LocalSparkCluster(settings).nodes())
    assert not LocalKafka(settings).status().running
    after = run_k2("status", env=env)  # everything down, the catalog's database too: said, not a crash
    assert after.returncode == 0, after.stderr[-2000:]
    stream_row = _status(after.stdout)[f"stream {EXCHANGE}"]
    assert "unknown" in stream_row and "catalog's database unreachable" in stream_row, stream_row
    _assert_passwords_kept(home, postgres.password(), airflow.redis.password(), [down, after])

    postgres.ensure_running()  # down kept the data: the catalog's tables and the Silver rows
    trades = load_catalog(settings.lake).load_table(SILVER_TRADES_ID).scan(selected_fields=("trade_id",))
    assert trades.to_arrow().num_rows == len(keys)


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
