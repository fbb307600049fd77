"""The embedded Spark Connect server that runs the batch: started on demand by the first job,
shared by the next, a killed task's Spark work is interrupted on the server, not left running, and
a job whose server dies fails at once."""

from __future__ import annotations

import os
import signal
import threading
import time
from pathlib import Path

import psutil
import pytest

from k2.airflow.hooks.spark_connect import K2SparkConnectHook
from k2.class_archive import archive_path
from k2.runtime.spark_connect import EXIT_ON_OOM, LocalSparkConnectServer
from tests.conftest import make_settings
from tests.helpers import maps_file, wait_for

pytestmark = pytest.mark.integration

JOB = """
import sys
from k2.settings import load_settings
from k2.spark import batch_session

spark = batch_session(load_settings(), "k2-test-job")
print("session", spark.version, flush=True)
if sys.argv[1] == "endless":
    open(sys.argv[2], "w").close()
    spark.range(10**13).selectExpr("sum(id % 7)").collect()  # hours of work on two cores
else:
    print("rows", spark.range(1000).count(), flush=True)
"""


def cpu_seconds(pid: int) -> float:
    times = psutil.Process(pid).cpu_times()
    return times.user + times.system


def idle(pid: int, window_s: float = 2.0) -> bool:
    before = cpu_seconds(pid)
    time.sleep(window_s)
    return cpu_seconds(pid) - before < 0.3 * window_s


def submit(hook: K2SparkConnectHook, failure: list[BaseException]) -> None:
    try:
        hook.submit()
    except BaseException as exc:  # a kill makes it fail: the test checks how
        failure.append(exc)


def test_jobs_start_the_server_share_it_and_a_killed_job_is_interrupted_on_it(
    tmp_path: Path, jars, monkeypatch: pytest.MonkeyPatch
) -> None:
    settings = make_settings(tmp_path / "home")
    monkeypatch.setenv("K2_HOME", str(settings.home))  # the job's process loads the same settings
    monkeypatch.setenv("K2_SPARK_CONNECT_PORT", str(settings.spark.connect_port))
    monkeypatch.delenv("AIRFLOW_CONN_K2_SPARK_CONNECT", raising=False)
    application = tmp_path / "job.py"
    application.write_text(JOB)
    server = LocalSparkConnectServer(settings)
    assert not server.status().running
    try:
        K2SparkConnectHook(settings, name="first", application=application, application_args=["short"]).submit()
        first = server.status()
        assert first.running  # the first job started it
        assert server.token_file.stat().st_mode & 0o777 == 0o600
        # out of heap it exits (for the watch below) instead of serving clients with a stopped context
        assert any(EXIT_ON_OOM in arg for arg in psutil.Process(first.pid).cmdline())
        assert maps_file(first.pid, archive_path(settings))  # it started on K2's class archive

        marker = tmp_path / "endless-started"
        endless = K2SparkConnectHook(
            settings, name="endless", application=application, application_args=["endless", str(marker)]
        )
        failure: list[BaseException] = []
        worker = threading.Thread(target=submit, args=(endless, failure))
        worker.start()
        wait_for(marker.exists, 120, "the endless job to start its query")
        wait_for(lambda: not idle(first.pid), 60, "the server to work on the endless query")
        endless.on_kill()
        assert endless.interrupted  # its query, interrupted on the server through the job's session id
        worker.join(60)
        assert not worker.is_alive() and failure and "exited with code" in str(failure[0])
        wait_for(lambda: idle(first.pid), 60, "the server to stop working on the killed job's query")

        K2SparkConnectHook(settings, name="next", application=application, application_args=["short"]).submit()
        assert server.status().pid == first.pid  # the same warm server, still up

        # the server dies under a running job (out of memory, kill -9): the job fails at once, saying
        # so, instead of its client retrying for minutes; the next job (the task's retry) starts it again
        marker = tmp_path / "doomed-started"
        doomed = K2SparkConnectHook(
            settings, name="doomed", application=application, application_args=["endless", str(marker)]
        )
        failure.clear()
        worker = threading.Thread(target=submit, args=(doomed, failure))
        worker.start()
        wait_for(marker.exists, 120, "the doomed job to start its query")
        os.kill(first.pid, signal.SIGKILL)
        worker.join(60)
        assert not worker.is_alive() and failure, "the job still waits on a dead server"
        assert f"server (pid {first.pid}) exited while doomed ran" in str(failure[0])
        K2SparkConnectHook(settings, name="retry", application=application, application_args=["short"]).submit()
        assert server.status().running and server.status().pid != first.pid
    finally:
        server.stop()
    assert not server.status().running
