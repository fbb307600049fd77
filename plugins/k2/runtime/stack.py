"""The embedded stack as one unit: what `k2 up` starts, in order, and what `k2 down` stops."""

from __future__ import annotations

import datetime as dt
import sys
import threading
import time

from k2 import dag_ids
from k2.errors import K2Error
from k2.log import get_logger
from k2.private import private_dir
from k2.runtime import procs
from k2.settings import Settings

log = get_logger(__name__)

STEPS = (
    "JVM artifacts and the Spark class archive",
    "Kafka broker",
    "topics",
    "PostgreSQL (if K2_POSTGRES_EMBEDDED) and Iceberg tables",
    "Spark (the embedded cluster if K2_SPARK_WORKERS > 0) and its Connect server for the batch",
    "Airflow",
    "supervisor DAGs",
    "Bronze streams",
    "simulated feeds and the query server",
    "batch DAGs: first Bronze -> Silver -> Gold run",
)
MONITORING_AND_BATCH_DAGS = (dag_ids.MONITORING, dag_ids.MEDALLION)
MAINTENANCE_DAG = dag_ids.MAINTENANCE  # unpaused last: its first run starts at once and queues Spark jobs


def _step(n: int) -> None:
    print(f"[{n}/{len(STEPS)}] {STEPS[n - 1]}", file=sys.stderr, flush=True)


def bring_up(
    settings: Settings, *, feeds: bool = True, wait_for_streams: bool = True, first_batch: bool = True
) -> None:
    from k2.class_archive import ensure_class_archive
    from k2.jvm import ensure_jars
    from k2.kafka.topics import ensure_topics
    from k2.lake.catalog import load_catalog
    from k2.lake.tables import all_tables, ensure_tables
    from k2.runtime.airflow import AirflowServices
    from k2.runtime.broker import LocalKafka
    from k2.runtime.postgres import LocalPostgres
    from k2.runtime.spark_cluster import LocalSparkCluster
    from k2.runtime.spark_connect import LocalSparkConnectServer
    from k2.streams.supervisor import StreamSupervisor

    private_dir(settings.home)  # before anything writes there: catalog, Airflow DB, secrets
    _step(1)
    ensure_jars(settings)
    ensure_class_archive(settings)
    _step(2)
    if settings.kafka.embedded:
        LocalKafka(settings).ensure_running()
    _step(3)
    ensure_topics(settings)
    _step(4)
    if settings.postgres.embedded:  # the catalog's and Airflow's database, before either is used
        LocalPostgres(settings).ensure_running()
    ensure_tables(load_catalog(settings.lake), all_tables(settings))
    _step(5)
    if settings.spark.embedded_cluster:
        LocalSparkCluster(settings).ensure_running()
    if settings.spark.connect_embedded:  # its JVM warms up while Airflow and the streams start
        LocalSparkConnectServer(settings).start_in_background()
    _step(6)
    for exchange in settings.exchanges:  # a previous `k2 down` asked the streams to stay stopped
        supervisor = StreamSupervisor(settings, exchange)
        supervisor.clear_stop()
        supervisor.close()
    airflow = AirflowServices(settings)
    airflow.start()
    _step(7)
    unpause_dags(airflow, settings, [dag_ids.bronze_stream(ex) for ex in settings.exchanges])
    _step(8)
    if wait_for_streams:
        wait_streams_running(settings)
    _step(9)
    # Nothing but a feed starts beside a stream's first batch with data, which its cold JVM takes
    # seconds over: that batch's records' latency is the first minute's p99, warned about at 10 s.
    if settings.batch.query_server:  # ready first: its start (imports, catching up) stays off that batch
        start_query_server(settings)
        if wait_for_streams:
            wait_query_server(settings)
    # feeds once the streams consume: records published before waited out the streams' start
    # (20-35 s) and opened a critical latency incident for each exchange at every `k2 up`
    feeds_started_ms = int(time.time() * 1000)
    if feeds:
        for exchange in settings.exchanges:
            start_feed(settings, exchange)
            if wait_for_streams and first_batch:
                # one stream's cold first batch at a time; and a running stream may not have
                # committed yet: without its rows, the first batch run would find Bronze empty
                wait_first_rows(settings, feeds_started_ms, [exchange])
    _step(10)
    # after those batches: unpausing starts four task processes at once (monitoring's first run,
    # the last hour's k2_medallion run)
    unpause_dags(airflow, settings, list(MONITORING_AND_BATCH_DAGS))
    if wait_for_streams and first_batch:
        # after the streams' first commits: beside them, the warm-up's jobs slowed the first batch
        # with data to 8.4 s, and its records' latency opened a warning in the first minute
        warming = _warm_batch_server(settings)
        if warming is not None:
            warming.join(timeout=WARM_UP_WAIT_S)
        run_first_batch(airflow)
    unpause_dags(airflow, settings, [MAINTENANCE_DAG])


WARM_UP_WAIT_S = 60.0  # the first run waits this long at most for the warm-up (40 s on a busy `k2 up`)


def _warm_batch_server(settings: Settings) -> threading.Thread | None:
    """Warms the embedded Spark Connect server up (``k2.runtime.spark_connect.warm_up``) in the
    background; None when the batch runs elsewhere."""
    if not settings.spark.connect_embedded:
        return None
    from k2.runtime.spark_connect import warm_up

    thread = threading.Thread(target=warm_up, args=(settings,), name="k2-spark-connect-warm-up", daemon=True)
    thread.start()
    return thread


def run_first_batch(airflow, timeout_s: float = 1200.0) -> None:
    """Process what the streams wrote this hour so far (the hourly schedule takes over from there):
    a k2_medallion run from the start of the hour to now, waited for."""
    from k2.runtime.airflow_api import AirflowApi

    api = AirflowApi.of(airflow)
    now = dt.datetime.now(dt.UTC)
    start = now.replace(minute=0, second=0, microsecond=0)
    if now - start < dt.timedelta(minutes=5):  # just past the hour: the streams' first records are before it
        start -= dt.timedelta(hours=1)
    conf = {"exchange": "all", "start": start.isoformat(), "end": now.isoformat()}
    run_id = f"k2_up__{now.strftime('%Y%m%dT%H%M%S')}"
    api.trigger(dag_ids.MEDALLION, run_id, conf)
    log.info("batch.triggered", dag_id=dag_ids.MEDALLION, run_id=run_id, **conf)
    deadline = time.monotonic() + timeout_s
    state, next_note = "queued", 0.0
    while state not in ("success", "failed"):
        if time.monotonic() > deadline:
            raise K2Error(
                f"{dag_ids.MEDALLION} run {run_id} still {state} after {timeout_s:.0f}s",
                "watch it in the Airflow UI (DAG k2_medallion); `k2 status` shows the tables.",
            )
        time.sleep(2)
        state = api.run_state(dag_ids.MEDALLION, run_id) or state
        if time.monotonic() > next_note:
            log.info("batch.waiting", run_id=run_id, state=state)
            next_note = time.monotonic() + 30
    if state == "failed":
        raise K2Error(
            f"{dag_ids.MEDALLION} run {run_id} failed",
            "open it in the Airflow UI (DAG k2_medallion) and read the failed task's log.",
        )
    log.info("batch.finished", run_id=run_id, state=state)


def unpause_dags(airflow, settings: Settings, dag_ids: list[str], timeout_s: float = 180.0) -> None:
    """Unpause each DAG once the DAG processor has registered it."""
    from k2.runtime.airflow_api import AirflowApi

    api = AirflowApi.of(airflow)
    pending = list(dag_ids)
    deadline = time.monotonic() + timeout_s
    while pending:
        registered = api.dag_ids()
        for dag_id in [d for d in pending if d in registered]:
            api.unpause(dag_id)
            log.info("airflow.dag_unpaused", dag_id=dag_id)
            pending.remove(dag_id)
        if pending and time.monotonic() > deadline:
            raise K2Error(
                f"Airflow did not register {', '.join(pending)} within {timeout_s:.0f}s",
                f"check `{settings.logs_dir / 'airflow' / 'dag-processor.log'}` for import errors.",
            )
        if pending:
            time.sleep(2)


def feed_pid_file(settings: Settings, exchange: str):
    return settings.run_dir / f"feed-{exchange}.pid"


def start_feed(
    settings: Settings, exchange: str, *, rate: float | None = None, duration_s: float | None = None
) -> None:
    """A simulated feed for ``exchange`` (at K2_FEED_SIM_RATE unless ``rate`` is given), detached."""
    pid_file = feed_pid_file(settings, exchange)
    if procs.running_pid(pid_file):
        return
    rate = settings.airflow.feed_sim_rate if rate is None else rate
    command = [sys.executable, "-m", "k2.cli", "feed", "--exchange", exchange, "--mode", "sim", "--rate", str(rate)]
    if duration_s:
        command += ["--duration", str(int(duration_s))]
    pid = procs.spawn(
        [*command, "--seed", str(int(time.time()))],
        pid_file=pid_file,
        log_file=settings.logs_dir / "feeds" / f"{exchange}.log",
    )
    log.info("feed.spawned", exchange=exchange, pid=pid, rate=rate)


def query_server_pid_file(settings: Settings):
    return settings.run_dir / "query-server.pid"


def start_query_server(settings: Settings) -> None:
    """``k2 query serve``, detached (it follows the topics from where Silver's work ends)."""
    pid_file = query_server_pid_file(settings)
    if procs.running_pid(pid_file):
        return
    command = [sys.executable, "-m", "k2.cli", "query", "serve"]
    pid = procs.spawn(command, pid_file=pid_file, log_file=query_server_log(settings))
    log.info("query_server.spawned", pid=pid)


def query_server_log(settings: Settings):
    return settings.logs_dir / "query" / "server.log"


REVIVE_AFTER_S = 60.0  # a server that exits sooner after its start is not started again by every query


def revive_query_server(settings: Settings) -> bool:
    """Starts the query server again when `k2 up` started it and it has exited since (killed, out of
    memory): its pid file outlived it, as `k2 down` removes the file. One starter at a time; not
    again within REVIVE_AFTER_S of the last start, so a server failing at start-up is not started
    by every query. True if it was started."""
    import fcntl

    pid_file = query_server_pid_file(settings)
    if not settings.batch.query_server or not pid_file.exists():
        return False
    with (settings.run_dir / "query-server.lock").open("a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            started_s_ago = time.time() - pid_file.stat().st_mtime
        except FileNotFoundError:  # `k2 down` meanwhile
            return False
        if procs.running_pid(pid_file) or started_s_ago < REVIVE_AFTER_S:
            return False
        log.warning(
            "query_server.restarting",
            cause="the query server exited without `k2 down`",
            log=str(query_server_log(settings)),
            fix="nothing to do: this query is answered without it, the next ones by it once it has caught up",
        )
        start_query_server(settings)
        return True


def wait_query_server(settings: Settings, timeout_s: float = 60.0) -> bool:
    """Until the query server answers and has caught up with every topic (or found it cannot serve
    one). A server not there by ``timeout_s`` is logged and waited for no longer: queries are answered
    without it meanwhile. True when it was ready."""
    from k2.query.live.protocol import ask

    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            answer = ask(settings, {"op": "status"})
        except OSError:  # a server still binding its socket, or one that died starting: not ready
            answer = None
        if answer is not None and answer[1].get("ready"):
            return True
        time.sleep(0.5)
    log.info("query_server.catching_up", waited_s=timeout_s, log=str(query_server_log(settings)))
    return False


def wait_streams_running(settings: Settings, timeout_s: float = 420.0) -> None:
    """Until every stream's own job says its query runs (Spark's start-up takes a while) and has
    finished its first trigger: on a new topic that is an empty batch paying the JVM's cold start
    (6 s on a busy `k2 up`), which records published meanwhile waited out, opening a latency warning
    in the first minute. Not until data arrives: a stream restarted on a quiet topic is ready idle."""
    from k2.streams.supervisor import StreamSupervisor

    supervisors = {ex: StreamSupervisor(settings, ex) for ex in settings.exchanges}
    deadline = time.monotonic() + timeout_s
    next_note = 0.0
    try:
        while True:
            reports = {ex: s.inspect() for ex, s in supervisors.items()}
            ready = [ex for ex, r in reports.items() if r.state == "running" and supervisors[ex].first_trigger_done()]
            if len(ready) == len(reports):
                return
            if time.monotonic() > deadline:
                raise K2Error(
                    f"Bronze streams not running after {timeout_s:.0f}s: "
                    + "; ".join(f"{ex}: {r.state} ({r.reason})" for ex, r in reports.items()),
                    f"see {settings.logs_dir / 'streams'} and the supervisor task logs in Airflow.",
                )
            if time.monotonic() > next_note:
                log.info("streams.waiting", **{ex: r.state for ex, r in reports.items()})
                next_note = time.monotonic() + 15
            time.sleep(2)
    finally:
        for s in supervisors.values():
            s.close()


def wait_first_rows(
    settings: Settings, since_ms: int, exchanges: list[str] | None = None, timeout_s: float = 180.0
) -> list[str]:
    """Until each Bronze table (of ``exchanges``, default all) has an append with rows committed at or
    after ``since_ms`` (the feeds' start), so that `k2 up`'s first batch has this session's trades. A
    feed still silent after ``timeout_s`` is logged and waited for no longer: the batch runs with what
    Bronze has. Returns the exchanges without rows."""
    from k2.lake.catalog import load_catalog
    from k2.lake.names import bronze_id

    catalog = load_catalog(settings.lake)
    pending = list(exchanges or settings.exchanges)
    deadline = time.monotonic() + timeout_s
    while pending and time.monotonic() < deadline:
        pending = [ex for ex in pending if not _appended_since(catalog.load_table(bronze_id(ex)), since_ms)]
        if pending:
            time.sleep(1)
    for exchange in pending:
        log.warning(
            "streams.no_rows_yet", exchange=exchange, waited_s=timeout_s,
            hint=f"the first batch runs without them; see {settings.logs_dir / 'feeds' / f'{exchange}.log'}",
        )  # fmt: skip
    return pending


def _appended_since(table, since_ms: int) -> bool:
    from k2.lake.snapshots import appends

    return bool(appends(table, since_ms, with_rows=True))


def bring_down(settings: Settings) -> list[tuple[str, str]]:
    """Stop feeds, the query server, streams (cleanly), Airflow (with its Celery workers, then Redis), the Spark Connect
    server, the broker and, last, K2's PostgreSQL server, which all of them used. Data stays."""
    from k2.runtime.airflow import AirflowServices
    from k2.runtime.broker import LocalKafka
    from k2.runtime.postgres import LocalPostgres
    from k2.runtime.spark_cluster import LocalSparkCluster
    from k2.runtime.spark_connect import LocalSparkConnectServer
    from k2.streams.supervisor import StreamSupervisor

    results = []
    feeds = procs.stop_all([feed_pid_file(settings, exchange) for exchange in settings.exchanges])
    results += [
        (f"feed {e}", "stopped" if stopped else "was not running")
        for e, stopped in zip(settings.exchanges, feeds, strict=True)
    ]
    stopped_query = procs.stop(query_server_pid_file(settings))
    results.append(("query server", "stopped" if stopped_query else "was not running"))
    supervisors = [StreamSupervisor(settings, exchange) for exchange in settings.exchanges]
    running = [s.instance.holder_pid() is not None for s in supervisors]
    procs.concurrently([s.request_stop for s in supervisors])  # each finishes its batch: together, not in turn
    for s in supervisors:
        s.close()  # their sessions with the catalog's database, which stops last
    results += [
        (f"stream {s.exchange}", "stopped" if r else "was not running")
        for s, r in zip(supervisors, running, strict=True)
    ]
    airflow = AirflowServices(settings)
    stopped_airflow = airflow.stop()  # the Celery workers with the rest, then their broker
    stopped_redis = "redis" in stopped_airflow
    stopped_airflow = [name for name in stopped_airflow if name != "redis"]
    results.append(("airflow", ", ".join(stopped_airflow) + " stopped" if stopped_airflow else "was not running"))
    if airflow.redis is not None:
        results.append(("redis", "stopped" if stopped_redis else "was not running"))
    if settings.spark.connect_embedded:  # after Airflow: no task starts it again
        results.append(("spark-connect", "stopped" if LocalSparkConnectServer(settings).stop() else "was not running"))
    if settings.spark.embedded_cluster:  # after every application on it
        stopped_nodes = LocalSparkCluster(settings).stop()
        results.append(("spark-cluster", ", ".join(stopped_nodes) + " stopped" if stopped_nodes else "was not running"))
    if settings.kafka.embedded:
        results.append(("kafka", "stopped" if LocalKafka(settings).stop() else "was not running"))
    if settings.postgres.embedded:  # after every client of the catalog and of Airflow's database
        results.append(("postgres", "stopped" if LocalPostgres(settings).stop() else "was not running"))
    return results
