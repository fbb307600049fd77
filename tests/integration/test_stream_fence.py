"""The streams' fence and control documents across hosts (k2.streams.fence, k2.streams.control) on
a real PostgreSQL server, the catalog's database: one holder per stream, named; freed when its holder
is killed or its session ends; a stream job that finds it held exits before touching its checkpoint,
saying where the stream runs; and every host reads and writes the same control documents, with
one checker at a time, signalling processes only on the host that launched them."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from k2.docstore import CatalogDocs
from k2.monitoring.incidents import IncidentStore
from k2.monitoring.notifiers import outbox
from k2.monitoring.shared import monitoring_docs
from k2.monitoring.thresholds import load_thresholds
from k2.resources import spark_job_file
from k2.runtime.postgres import LocalPostgres
from k2.streams.control import CHECKER, stream_control
from k2.streams.fence import CatalogFence, applies
from k2.streams.health import SupervisorState
from k2.streams.job import EXIT_ALREADY_RUNNING
from k2.streams.state import StreamPaths
from k2.streams.supervisor import StreamSupervisor
from tests.conftest import make_settings
from tests.helpers import free_port, wait_for

pytestmark = pytest.mark.integration

THRESHOLDS = load_thresholds(("binance",))

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
    status = stream_control(settings, "binance").read("status")  # in the catalog's database, not a file
    assert not paths.status.exists()
    assert status["state"] == "failed" and status["reason"] == "running_elsewhere"
    assert elsewhere.name in status["error"] and "k2 stream stop" in status["fix"]
    assert not Path(paths.checkpoint).exists()  # nothing written where the other instance writes
    assert postgres.password() not in job.stdout + job.stderr


def test_every_host_shares_the_control_documents_and_one_checker_runs_at_a_time(
    postgres: LocalPostgres, tmp_path: Path
) -> None:
    settings = make_settings(tmp_path / "home", catalog_uri=postgres.uri("catalog"))
    here, there = stream_control(settings, "binance"), CatalogDocs(settings, "stream/binance")  # two hosts' views
    assert isinstance(here, CatalogDocs)
    here.write("supervisor", {"restarts": [1.5], "consecutive_failures": 2})
    assert there.read("supervisor") == {"restarts": [1.5], "consecutive_failures": 2}
    assert there.read("stop") is None and stream_control(settings, "kraken").read("supervisor") is None
    there.write("stop", {"requested_at": 1.0})
    assert here.read("stop") == {"requested_at": 1.0}
    here.delete("stop")
    assert there.read("stop") is None
    with here.exclusive(CHECKER, wait=False) as first, there.exclusive(CHECKER, wait=False) as second:
        assert first and not second  # a check elsewhere waits for the next run
    with there.exclusive(CHECKER, wait=False) as again:
        assert again
    # the server restarted between two checks: the next read opens a new session
    with postgres.connect("catalog") as admin, admin.cursor() as cur:
        cur.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name LIKE 'k2-docs-%'")
    assert here.read("supervisor")["consecutive_failures"] == 2

    # monitoring's incidents and alert outbox: what a run on one worker opened, the next run elsewhere finds
    book_here, book_there = IncidentStore(monitoring_docs(settings)), IncidentStore(monitoring_docs(settings))
    with book_here.transaction() as book:
        assert [e.kind for e in book.evaluate("binance", {"latency_p99_s": 50}, THRESHOLDS, 0.0, 60)] == ["opened"]
    with book_there.transaction() as book:
        assert book.evaluate("binance", {"latency_p99_s": 50}, THRESHOLDS, 60.0, 60) == []  # no second alert
    assert isinstance(outbox(settings).docs, CatalogDocs) and not (settings.monitoring_dir / "incidents.json").exists()

    # a stream launched and running on another host: this host's check sees it run through its status,
    # and never signals a process group of that number here
    a, b = StreamSupervisor(settings, "binance"), StreamSupervisor(settings, "binance")
    b.host = "another-host"
    try:
        a.control.write("status", {"state": "running", "host": a.host, "pid": 4242, "heartbeat_at": time.time()})
        assert b.running_pid(b.control.read("status")) == 4242 and b.query_running()
        a.control.write("status", {"state": "running", "host": a.host, "pid": 4242, "heartbeat_at": time.time() - 60})
        assert b.running_pid(b.control.read("status")) is None  # no longer beating: a check there may start it
        launcher = subprocess.Popen(["sleep", "60"], start_new_session=True)  # a launcher of this host's
        launched_here = SupervisorState(launched_at=time.time(), launcher_pgid=launcher.pid, launcher_host=a.host)
        assert not b._here(launched_here) and a._here(launched_here)
        b.kill(launched_here, grace_s=0.1)  # a no-op on the other host: the group is not its own
        assert launcher.poll() is None
        a.kill(launched_here, grace_s=5)
        assert launcher.wait(10) is not None
    finally:
        a.close()
        b.close()
        here.close()
        there.close()


# a stream job as far as `k2 down` is concerned: holds the instance lock, stops cleanly on SIGTERM
LOCK_HOLDER = """
import signal, sys, time
from pathlib import Path
from k2.streams.state import InstanceLock
lock = InstanceLock(Path(sys.argv[1]))
assert lock.acquire()
signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
print("held", flush=True)
time.sleep(600)
"""


def test_a_stop_request_reaches_the_stream_here_while_the_catalogs_database_is_down(tmp_path: Path) -> None:
    down = f"postgresql+psycopg2://k2:secret@127.0.0.1:{free_port()}/catalog"  # nothing listens there
    settings = make_settings(tmp_path / "home", catalog_uri=down)
    supervisor = StreamSupervisor(settings, "binance")
    job = subprocess.Popen(
        [sys.executable, "-c", LOCK_HOLDER, str(supervisor.paths.lock)], stdout=subprocess.PIPE, text=True
    )
    try:
        assert job.stdout.readline().strip() == "held" and supervisor.instance.holder_pid() == job.pid
        assert supervisor.request_stop(timeout_s=30)  # the store refused the request: SIGTERM instead
        assert job.wait(10) == 0  # it stopped the clean way, not killed
    finally:
        job.kill()
        job.wait(10)
        supervisor.close()
