"""K2 on its embedded Spark standalone cluster (a master and two workers, separate processes from
pyspark's own jars): a supervised Bronze stream runs as a cluster application and loses nothing, and
holds nothing twice, when the worker running its executor dies with SIGKILL under load; the batch
then runs on the same cluster through the Spark Connect server and Silver holds each trade once."""

from __future__ import annotations

import datetime as dt
import json
import threading
import time
from pathlib import Path

import pytest

from k2.airflow.hooks.spark_connect import spark_job_hook
from k2.lake.catalog import load_catalog
from k2.lake.names import SILVER_TRADES_ID
from k2.resources import spark_job_file
from k2.runtime.spark_cluster import LocalSparkCluster
from k2.runtime.spark_connect import LocalSparkConnectServer
from k2.settings import is_loopback
from k2.streams.state import StreamPaths
from k2.streams.supervisor import StreamSupervisor
from tests.helpers import free_port, wait_for
from tests.integration.stream_support import (
    EXCHANGE,
    BackgroundFeed,
    bronze_coordinates,
    ensure_topics_and_tables,
    isolated_installation,
    running_job,
)
from tests.integration.test_bronze_streams import end_offsets
from tests.integration.test_cli import k2_processes

pytestmark = pytest.mark.integration

STREAM_APP = f"k2-bronze-{EXCHANGE}"


@pytest.fixture
def spark_cluster(kafka_broker, settings, tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    scoped = isolated_installation(
        tmp_path / "home",
        settings.kafka.port,
        settings.kafka.controller_port,
        monkeypatch,
        K2_SPARK_WORKERS="2",
        K2_SPARK_WORKER_CORES="2",  # one worker left still has a slot for the stream and one for the batch
        K2_SPARK_MASTER_PORT=str(free_port()),
        K2_SPARK_MASTER_UI_PORT=str(free_port()),
        K2_SPARK_CORES_MAX="1",
    )
    assert scoped.spark.embedded_cluster and scoped.streams.cores_max == 1
    ensure_topics_and_tables(scoped)
    cluster = LocalSparkCluster(scoped)
    try:
        cluster.ensure_running()
        yield scoped, cluster
    finally:
        supervisor = StreamSupervisor(scoped, EXCHANGE)
        supervisor.request_stop(timeout_s=60)
        supervisor.close()
        LocalSparkConnectServer(scoped).stop()
        cluster.stop()
    assert not any(node.running for node in cluster.nodes())


def test_a_worker_killed_under_load_loses_nothing_and_the_batch_runs_on_the_cluster(spark_cluster) -> None:
    settings, cluster = spark_cluster
    started = dt.datetime.now(dt.UTC) - dt.timedelta(minutes=1)
    state = cluster.state()
    assert state.alive_workers == 2 and state.cores == 4
    listening = {
        (proc.pid, conn.laddr.ip, conn.laddr.port)
        for proc in k2_processes(settings.home)
        for conn in proc.net_connections(kind="inet")
        if conn.status == "LISTEN"
    }
    assert len(listening) >= 5  # master RPC and UI, each worker's RPC and UI
    assert all(is_loopback(ip) for _, ip, _ in listening), listening

    paths = StreamPaths.of(settings, EXCHANGE)
    supervisor = StreamSupervisor(settings, EXCHANGE)
    stop = threading.Event()
    supervision = threading.Thread(
        target=supervisor.supervise, args=(3600,), kwargs={"should_continue": lambda: not stop.is_set()}, daemon=True
    )
    supervision.start()
    feed = BackgroundFeed(settings, rate=400)
    try:
        wait_for(lambda: running_job(paths), 300, "the stream's first batch on the cluster")
        assert STREAM_APP in cluster.state().applications.values()  # a cluster application, not local mode
        victim = wait_for(lambda: cluster.executor_worker(STREAM_APP), 60, "the stream's executor", interval=1)
        cluster.kill_worker(victim)
        killed_at = time.time()
        # the master moves the stream's executor to the worker left; Bronze commits records sent after the kill
        wait_for(lambda: running_job(paths, after=killed_at + 10), 300, "Bronze commits after the worker's death")
        wait_for(lambda: cluster.state().alive_workers == 1, 60, "the master to drop the dead worker")
        survivor = 3 - victim
        wait_for(lambda: cluster.executor_worker(STREAM_APP) == survivor, 60, "the executor moved", interval=1)
        summary = feed.finish()
        assert summary.delivery.failed == 0 and summary.delivery.delivered > 0
        ends = end_offsets(settings)
        wait_for(lambda: len(bronze_coordinates(settings)) >= sum(ends.values()), 300, "Bronze to catch up")
        coords = bronze_coordinates(settings)
        assert len(coords) == len(set(coords)), "a record is in Bronze twice"
        for partition, end in ends.items():
            assert sorted(o for p, o in coords if p == partition) == list(range(end)), f"partition {partition} gap"
    finally:
        feed.finish()
        stop.set()
        supervision.join(60)
        supervisor.close()

    # the batch on the same cluster (the embedded Spark Connect server is a cluster application too)
    end = dt.datetime.now(dt.UTC)
    reports = []
    for attempt in (1, 2):  # a second run of the same interval adds nothing
        report_file = settings.home / f"silver-{attempt}.json"
        window = ["--start", started.isoformat(), "--end", end.isoformat()]
        args = ["--layer", "silver", "--exchange", EXCHANGE, *window, "--report", str(report_file)]
        spark_job_hook(
            settings, name="k2-silver-cluster", application=spark_job_file("medallion"), application_args=args
        ).submit()
        assert "k2-spark-connect" in cluster.state().applications.values()
        reports.append(json.loads(report_file.read_text()))
    first, second = reports
    assert first["bronze_rows"] == len(coords), first  # every Bronze row of the stream, processed on the cluster
    assert first["silver_new"] > 0 and second["silver_new"] == 0, reports
    silver = load_catalog(settings.lake).load_table(SILVER_TRADES_ID).scan().to_arrow()
    keys = list(zip(silver["symbol"].to_pylist(), silver["trade_id"].to_pylist(), strict=True))
    assert len(keys) == len(set(keys)) == first["silver_new"], "a trade is in Silver twice"
