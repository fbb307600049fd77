"""Bronze streams under supervision, with the real broker, Spark and Iceberg.

The supervisor launches the job exactly as in production (detached launcher -> SparkSubmitHook ->
spark-submit -> spark_jobs/bronze_ingest.py), so each test configures K2 through K2_* variables,
which the launched processes inherit.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from confluent_kafka import Consumer, TopicPartition

from k2.kafka.lag import committed_offsets
from k2.lake.catalog import load_catalog
from k2.medallion.settle import last_trigger
from k2.resources import spark_job_file
from k2.settings import Settings, load_settings
from k2.streams.state import StreamPaths, read_json, recent_progress
from k2.streams.supervisor import StreamSupervisor
from tests.helpers import free_port, wait_for
from tests.integration.stream_support import EXCHANGE, BackgroundFeed, Checks, bronze_coordinates, running_job

pytestmark = pytest.mark.integration


def end_offsets(settings: Settings) -> dict[int, int]:
    consumer = Consumer({"bootstrap.servers": settings.kafka.bootstrap_servers, "group.id": "t"})
    try:
        topic = settings.topic_for(EXCHANGE)
        return {
            p: consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=10)[1]
            for p in range(settings.topics.partitions)
        }
    finally:
        consumer.close()


def bronze_snapshots(settings: Settings) -> list:
    return load_catalog(settings.lake).load_table(f"bronze.{EXCHANGE}_trades").snapshots()


def idle_after(paths: StreamPaths, moment: float) -> dict | None:
    idle = read_json(paths.idle)
    return idle if idle and idle["idle_at"] > moment else None


def test_supervised_stream_survives_kills_and_a_stall_with_exactly_once_bronze(
    stream_settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    # the stream expires its own snapshots every few seconds here, racing its own commits
    monkeypatch.setenv("K2_BRONZE_EXPIRE_EVERY_S", "5")
    monkeypatch.setenv("K2_BRONZE_SNAPSHOT_RETENTION_S", "5")
    monkeypatch.setenv("K2_MAINTENANCE_MIN_SNAPSHOTS", "1")
    paths = StreamPaths.of(stream_settings, EXCHANGE)
    feed = BackgroundFeed(stream_settings, rate=2000)
    checks = Checks(every_s=3)
    try:
        status = wait_for(lambda: running_job(paths), 240, "the supervised stream's first batch")
        restart_times = []
        for _ in range(2):  # kill -9 of the Spark driver (the JVM) under load, twice: restarts repeat
            killed_at = time.time()
            os.kill(status["driver_pid"], signal.SIGKILL)
            status = wait_for(lambda t=killed_at: running_job(paths, after=t), 180, "a restart after kill -9")
            restart_times.append(time.time() - killed_at)
        assert all(t < 120 for t in restart_times), restart_times

        # a stall: the driver is alive but frozen while Kafka keeps growing
        frozen = status["driver_pid"]
        stalled_at = time.time()
        os.kill(frozen, signal.SIGSTOP)
        status = wait_for(lambda: running_job(paths, after=stalled_at), 240, "a restart after a stall")
        assert status["driver_pid"] != frozen
        state = read_json(paths.supervisor)
        assert len(state["restarts"]) == 3

        summary = feed.finish()
        assert summary.ok and summary.messages > 10_000
        ends = end_offsets(stream_settings)
        assert sum(ends.values()) == summary.delivery.delivered
        wait_for(
            lambda: sum(1 for _ in bronze_coordinates(stream_settings)) >= sum(ends.values()),
            180,
            "Bronze to catch up with Kafka",
        )
        # the listener's files: the last batch's end offsets are Kafka's ends; the idle stream says so
        topic = stream_settings.topic_for(EXCHANGE)
        wait_for(lambda: committed_offsets(read_json(paths.progress) or {}, topic) == ends, 60, "the last progress")
        progress = read_json(paths.progress)
        assert recent_progress(paths, 1) == [progress]
        assert progress["rows"] > 0 and progress["duration_ms"]["triggerExecution"] > 0
        idle = wait_for(lambda: idle_after(paths, progress["completed_at"]), 60, "an idle trigger after the catch-up")
        assert idle["query_id"] == progress["query_id"] and last_trigger(stream_settings, EXCHANGE) is not None
        # one snapshot per batch, but the idle stream soon expires all but the newest
        batches = progress["batch_id"] + 1
        wait_for(lambda: len(bronze_snapshots(stream_settings)) == 1, 60, "the stream to expire its snapshots")
        assert batches >= 4, batches  # a first batch, then one after each of the three restarts at least
        assert "manifests_merged=" in paths.log_file.read_text(errors="replace")  # bronze.upkeep ran
        coords = bronze_coordinates(stream_settings)  # and every row is still there, once
        assert len(coords) == len(set(coords)), "a record is in Bronze twice"
        for partition, end in ends.items():
            offsets = sorted(o for p, o in coords if p == partition)
            assert offsets == list(range(end)), f"partition {partition} is not contiguous"
    finally:
        feed.stop()
        log = checks.stop()
        StreamSupervisor(stream_settings, EXCHANGE).request_stop(timeout_s=60)
    # checks that each exited did the supervising: a launcher they left behind is nobody's child
    # the restarts' reasons name what the checks found: the query's failure, or a status left running
    assert "not running: first start" in log and log.count("): restart") >= 3
    assert "stalled: no batch for" in log
    final = read_json(paths.status)
    assert final["state"] == "stopped" and final["reason"] == "stop requested"


def test_racing_supervisors_run_one_job_and_a_lapsed_lease_stops_it(stream_settings: Settings, tmp_path: Path) -> None:
    paths = StreamPaths.of(stream_settings, EXCHANGE)
    env = {**os.environ, "K2_STREAM_LEASE_TTL_S": "15"}
    check = [sys.executable, "-m", "k2.cli", "stream", "check"]
    deadline = time.monotonic() + 240
    launches = set()
    while time.monotonic() < deadline and running_job(paths) is None:
        racers = [
            subprocess.Popen(check, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL) for _ in range(2)
        ]
        for racer in racers:
            racer.wait(120)
        state = read_json(paths.supervisor) or {}
        launches.add(state.get("launcher_pgid"))
    status = running_job(paths)
    assert status is not None, "the stream never ran"
    assert len(launches - {None}) == 1, f"supervisors launched {len(launches)} jobs"

    # a job launched behind the supervisors' backs cannot run on the same checkpoint
    rogue = subprocess.run(
        [sys.executable, "-m", "k2.streams.launcher", "--exchange", EXCHANGE],
        env=env,
        capture_output=True,
        text=True,
        timeout=240,
    )
    assert rogue.returncode != 0
    assert "bronze.already_running" in rogue.stdout + rogue.stderr
    assert read_json(paths.status)["pid"] == status["pid"]  # the running job is untouched

    # nobody renews the lease any more (the supervising DAG is paused): the job stops itself
    wait_for(lambda: (read_json(paths.status) or {}).get("state") == "stopped", 120, "the job to stop itself")
    assert "lease expired" in read_json(paths.status)["reason"]


def run_job_directly(settings: Settings) -> subprocess.CompletedProcess:
    """The job's pre-flight checks run before Spark starts, so no spark-submit is needed here."""
    return subprocess.run(
        [sys.executable, str(spark_job_file("bronze_ingest")), "--exchange", EXCHANGE],
        env=os.environ.copy(),
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_unreachable_broker_fails_loudly(stream_settings: Settings, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("K2_KAFKA_BOOTSTRAP_SERVERS", f"127.0.0.1:{free_port()}")
    result = run_job_directly(load_settings())
    assert result.returncode == 69
    status = read_json(StreamPaths.of(stream_settings, EXCHANGE).status)
    assert status["state"] == "failed" and status["reason"] == "kafka_unreachable"
    assert "k2 kafka start" in status["fix"]


def test_corrupt_checkpoint_is_reported_kept_and_not_restarted(stream_settings: Settings) -> None:
    paths = StreamPaths.of(stream_settings, EXCHANGE)
    broken = paths.local_checkpoint / "offsets" / "7"
    broken.parent.mkdir(parents=True)
    (paths.local_checkpoint / "metadata").write_text(json.dumps({"id": "q"}))
    broken.write_bytes(b"\x00garbage")
    result = run_job_directly(stream_settings)
    assert result.returncode == 78
    status = read_json(paths.status)
    assert status["reason"] == "checkpoint_corrupt" and str(broken) in status["error"]
    assert broken.read_bytes() == b"\x00garbage"

    alerts = []
    supervisor = StreamSupervisor(stream_settings, EXCHANGE, alert=lambda *a: alerts.append(a))
    state = supervisor.load_state()
    state.launched_at = time.time() - 5  # as if it had launched the job that failed
    supervisor.save_state(state)
    first, second = supervisor.reconcile(), supervisor.reconcile()
    supervisor.close()
    assert first.state == second.state == "given_up"
    assert len(alerts) == 1 and alerts[0][0] == "critical" and "checkpoint" in alerts[0][2]
