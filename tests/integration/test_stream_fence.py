"""The streams' fence across hosts (k2.streams.fence) on a real PostgreSQL server, the catalog's
database: one holder per stream, named; freed when its holder is killed or its session ends; and a
stream job that finds it held exits before touching its checkpoint, saying where the stream runs."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from k2.resources import spark_job_file
from k2.runtime.postgres import LocalPostgres
from k2.streams.fence import CatalogFence, applies
from k2.streams.job import EXIT_ALREADY_RUNNING
from k2.streams.state import StreamPaths, read_json
from tests.conftest import make_settings
from tests.helpers import free_port, wait_for

pytestmark = pytest.mark.integration

# another host's stream, as far as the lock is concerned: a process holding the fence until killed
HOLDER = """
import sys, time
from k2.settings import Settings
from k2.streams.fence import CatalogFence
fence = CatalogFence(Settings.from_env({}, catalog_uri=sys.argv[1]).lake, "binance")
assert fence.acquire()
print(fence.name, flush=True)
time.sleep(600)
"""


def test_one_holder_per_stream_freed_with_its_session(postgres: LocalPostgres, tmp_path: Path) -> None:
    lake = make_settings(tmp_path / "home", catalog_uri=postgres.uri("catalog")).lake
    assert applies(lake) and not applies(make_settings(tmp_path / "sqlite").lake)
    first, second = CatalogFence(lake, "binance"), CatalogFence(lake, "binance")
    assert first.acquire() and not second.acquire()
    assert second.holder() == first.name  # exchange, host and pid of the instance that runs
    other = CatalogFence(lake, "kraken")
    assert other.acquire()  # one fence per stream
    other.release()

    # the server ends the holder's session (a restart, a network cut): the holder sees it at its
    # next check and must stop writing; the stream is free for the next instance
    with postgres.connect("catalog") as admin, admin.cursor() as cur:
        cur.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = %s", (first.name,))
    assert not first.check()
    assert second.acquire() and second.check() and second.holder() == second.name
    second.release()
    first.release()

    # killed with SIGKILL, its socket closes and the server frees the lock
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLDER, postgres.uri("catalog")], stdout=subprocess.PIPE, text=True
    )
    try:
        name = holder.stdout.readline().strip()
        assert name.endswith(f"pid={holder.pid}") and not first.acquire()
        os.kill(holder.pid, signal.SIGKILL)
        holder.wait(30)
        wait_for(first.acquire, 30, "the killed holder's lock to be freed")
    finally:
        holder.kill()
        holder.wait(30)
        first.release()


def test_a_job_that_finds_the_fence_held_exits_before_its_checkpoint(postgres: LocalPostgres, tmp_path: Path) -> None:
    settings = make_settings(tmp_path / "home", catalog_uri=postgres.uri("catalog"))
    elsewhere = CatalogFence(settings.lake, "binance")
    assert elsewhere.acquire()
    env = {k: v for k, v in os.environ.items() if not k.startswith("K2_")}
    env.update(K2_HOME=str(settings.home), K2_CATALOG_URI=postgres.uri("catalog"), K2_KAFKA_PORT=str(free_port()))
    try:
        job = subprocess.run(
            [sys.executable, str(spark_job_file("bronze_ingest")), "--exchange", "binance"],  # Spark starts later
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
    finally:
        elsewhere.release()
    assert job.returncode == EXIT_ALREADY_RUNNING, job.stderr[-3000:]
    paths = StreamPaths.of(settings, "binance")
    status = read_json(paths.status)
    assert status["state"] == "failed" and status["reason"] == "running_elsewhere"
    assert elsewhere.name in status["error"] and "k2 stream stop" in status["fix"]
    assert not Path(paths.checkpoint).exists()  # nothing written where the other instance writes
    assert postgres.password() not in job.stdout + job.stderr
