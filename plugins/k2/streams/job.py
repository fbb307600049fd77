"""A Bronze stream's process: one exchange's Kafka topic -> ``bronze.<exchange>_trades``, forever
(the query itself is k2.medallion.bronze). spark-submit runs it as ``spark_jobs/bronze_ingest.py``:

    spark-submit ... spark_jobs/bronze_ingest.py --exchange binance

One instance per checkpoint: the job holds the stream's instance lock for its whole life and
exits with EXIT_ALREADY_RUNNING when another process has it; with the catalog on PostgreSQL, it
also holds a fence there that keeps instances on other hosts out (k2.streams.fence). Iceberg's
streaming sink commits each micro-batch once (a replayed batch id is skipped), so restarts from
the checkpoint neither lose nor duplicate rows. The job stops cleanly on SIGTERM, on ``k2 stream
stop``, and when its supervisor's lease expires (the supervising DAG was paused).
"""

from __future__ import annotations

import argparse
import os
import signal
import socket
import threading
import time
import traceback

from k2.errors import K2Error
from k2.exchanges import get_exchange
from k2.kafka.clients import broker_reachable
from k2.lake.tables import bronze_table
from k2.log import configure_logging, get_logger
from k2.settings import Settings, load_settings
from k2.streams.checkpoint import checkpoint_problem
from k2.streams.control import ListenerMirror, StreamControl, stream_control
from k2.streams.fence import CatalogFence
from k2.streams.fence import applies as fence_applies
from k2.streams.jvm_logs import quiet_stream_logs
from k2.streams.outage import BrokerWatch, KafkaOutage
from k2.streams.state import InstanceLock, StreamPaths
from k2.streams.upkeep import MetadataUpkeep

log = get_logger("k2.bronze")

EXIT_ALREADY_RUNNING = 75  # EX_TEMPFAIL
EXIT_UNAVAILABLE = 69  # EX_UNAVAILABLE: broker or catalog unreachable
EXIT_CHECKPOINT = 78  # EX_CONFIG: the checkpoint needs an operator's decision

# How often the driver looks at its query, the stop request, the lease and its housekeeping, and
# beats (status.json): a stop is seen within this, the supervisor's stall rule reads the
# listener's files instead. Each look is a py4j call; once a second they cost the stream CPU.
WATCH_EVERY_S = 5.0


class StreamExit(K2Error):
    """A failure (at start-up, or a dependency gone) with the exit code that tells the supervisor
    how to react."""

    def __init__(self, cause: str, fix: str, *, reason: str, exit_code: int) -> None:
        super().__init__(cause, fix)
        self.reason = reason
        self.exit_code = exit_code


def run(settings: Settings, exchange_name: str) -> int:
    exchange = get_exchange(exchange_name)
    paths = StreamPaths.of(settings, exchange.name).ensure()
    lock = InstanceLock(paths.lock)
    if not lock.acquire():
        log.error("bronze.already_running", exchange=exchange.name, holder=lock.holder_pid())
        return EXIT_ALREADY_RUNNING
    control = stream_control(settings, exchange.name)
    status = {
        "exchange": exchange.name,
        "host": socket.gethostname(),
        "pid": os.getpid(),
        "driver_pid": os.getppid(),
        "started_at": time.time(),
        "checkpoint": paths.checkpoint,
    }

    def set_status(state: str, **fields) -> None:
        status.update(state=state, updated_at=time.time(), **fields)
        try:
            control.write("status", status)
        except Exception as exc:  # the store is the catalog's database: its outage is reported, not fatal here
            log.warning("bronze.status_not_written", exchange=exchange.name, state=state, error=str(exc)[:500])

    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    fence = CatalogFence(settings.lake, exchange.name) if fence_applies(settings.lake) else None
    try:
        set_status("starting")
        if fence is not None:
            take_fence(fence)
        preflight(settings, paths)
        spark, query = start_query(settings, exchange.name, paths)
        upkeep = MetadataUpkeep(spark, settings, bronze_table(exchange.name).identifier)
        # the application id lets a check on another host end it through a standalone master
        set_status(
            "running", query_id=str(query.id), run_id=str(query.runId), spark_app_id=spark.sparkContext.applicationId
        )
        log.info(
            "bronze.running",
            exchange=exchange.name,
            query_id=str(query.id),
            trigger_s=settings.streams.trigger_interval_s,
            max_offsets=settings.streams.max_offsets_per_trigger,
        )
        reason = watch(
            query,
            control,
            stop,
            set_status,
            housekeeping=upkeep,
            broker=broker_watch(settings),
            fence=fence,
            mirror=ListenerMirror(paths, control),
            application_ended=spark.sparkContext._jsc.sc().isStopped,
        )
        set_status("stopping", reason=reason)
        query.stop()
        set_status("stopped", reason=reason)
        log.info("bronze.stopped", exchange=exchange.name, reason=reason)
        return 0
    except (StreamExit, KafkaOutage) as failure:
        exc = kafka_outage(settings, failure.down_s) if isinstance(failure, KafkaOutage) else failure
        set_status("failed", error=exc.cause, fix=exc.fix, reason=exc.reason, exit_code=exc.exit_code)
        log.error("bronze.failed", exchange=exchange.name, reason=exc.reason, error=exc.cause, fix=exc.fix)
        return exc.exit_code
    except Exception as exc:
        # a query that dies while the broker is away is an outage, waited out, not the stream's fault
        outage = not broker_reachable(settings.kafka.bootstrap_servers, timeout=10)
        set_status(
            "failed",
            error=f"{type(exc).__name__}: {exc}"[:4000],
            reason="kafka_unreachable" if outage else "error",
            traceback=traceback.format_exc()[-4000:],
        )
        log.error("bronze.failed", exchange=exchange.name, kafka_unreachable=outage, error=str(exc)[:2000])
        return EXIT_UNAVAILABLE if outage else 1
    finally:
        if fence is not None:
            fence.release()
        control.close()
        lock.release()


def take_fence(fence: CatalogFence) -> None:
    """The cross-host fence (k2.streams.fence), before anything touches the checkpoint."""
    import psycopg2

    try:
        if fence.acquire():
            return
        holder = fence.holder() or "a session that has just ended"
    except psycopg2.Error as exc:
        raise catalog_gone(f"the catalog's database did not answer for the stream's fence: {exc}") from exc
    raise StreamExit(
        f"another instance of the stream holds its fence in the catalog's database: {holder}",
        "one host runs each stream: stop it there (`k2 stream stop`) to move it here; until then the supervisor "
        "here waits, and takes over when that instance ends.",
        reason="running_elsewhere",
        exit_code=EXIT_ALREADY_RUNNING,
    )


def catalog_gone(cause: str) -> StreamExit:
    return StreamExit(
        cause,
        "check the catalog's database (K2_CATALOG_URI); the supervisor restarts the stream with back-off.",
        reason="catalog_unreachable",
        exit_code=EXIT_UNAVAILABLE,
    )


def preflight(settings: Settings, paths: StreamPaths) -> None:
    """Fail loudly, before Spark starts, on what would otherwise make the stream hang or spin."""
    if not broker_reachable(settings.kafka.bootstrap_servers, timeout=10):
        raise StreamExit(
            f"Kafka at {settings.kafka.bootstrap_servers} is unreachable",
            "start it (`k2 kafka start`) or fix K2_KAFKA_BOOTSTRAP_SERVERS; the supervisor retries with back-off.",
            reason="kafka_unreachable",
            exit_code=EXIT_UNAVAILABLE,
        )
    problem = checkpoint_problem(paths.checkpoint, settings.lake)
    if problem is not None:
        raise StreamExit(problem.cause, problem.fix, reason="checkpoint_corrupt", exit_code=EXIT_CHECKPOINT)


def broker_watch(settings: Settings) -> BrokerWatch:
    servers = settings.kafka.bootstrap_servers
    return BrokerWatch(lambda: broker_reachable(servers, timeout=5), settings.streams.kafka_outage_s)


def kafka_outage(settings: Settings, down_s: float) -> StreamExit:
    return StreamExit(
        f"no Kafka broker at {settings.kafka.bootstrap_servers} answered for {down_s:.0f} s",
        "the supervisor restarts the stream with back-off until one answers; check the brokers (`k2 kafka status`).",
        reason="kafka_unreachable",
        exit_code=EXIT_UNAVAILABLE,
    )


def start_query(settings: Settings, exchange: str, paths: StreamPaths):
    from k2.medallion.bronze import bronze_table_name, start_bronze_query
    from k2.spark import STREAM, build_spark_session
    from k2.streams.listener import add_progress_listener

    # the stream's own resources: the builder's values win over spark-submit's --conf
    spark = build_spark_session(
        settings, f"k2-bronze-{exchange}", role=STREAM, extra_conf=stream_session_conf(settings)
    )
    table = bronze_table_name(settings.lake, exchange)
    try:
        spark.table(table)
    except Exception as exc:
        raise StreamExit(
            f"the Bronze table {table} is not reachable in the catalog: {exc}"[:1000],
            "run `k2 lake init`, and check K2_CATALOG_URI.",
            reason="catalog_unreachable",
            exit_code=EXIT_UNAVAILABLE,
        ) from exc
    add_progress_listener(spark, settings, paths)
    quiet_stream_logs(spark)
    return spark, start_bronze_query(spark, settings, exchange, paths.checkpoint)


def stream_session_conf(settings: Settings) -> dict[str, str]:
    """The stream's own Spark SQL settings (K2_BRONZE_CODEGEN)."""
    if settings.streams.codegen:
        return {}
    return {"spark.sql.codegen.wholeStage": "false", "spark.sql.codegen.factoryMode": "NO_CODEGEN"}


def watch(
    query,
    control: StreamControl,
    stop: threading.Event,
    set_status,
    housekeeping=lambda: None,
    every_s: float = WATCH_EVERY_S,
    broker: BrokerWatch | None = None,
    fence: CatalogFence | None = None,
    mirror=lambda: None,
    application_ended=lambda: False,
) -> str:
    """Block until the query ends or should end; returns why it should stop. ``housekeeping`` runs
    every ``every_s`` alongside (it decides itself whether there is anything to do), and ``mirror``
    publishes the listener's files to the control store. Raises StreamExit when ``broker`` says
    Kafka has been gone too long, the ``fence`` or the control store is lost, or the Spark
    application has ended under a query that waits for data (it would fail only at its next batch)."""
    while True:
        if query.awaitTermination(every_s):
            exc = query.exception()
            if exc is not None:
                raise RuntimeError(f"streaming query failed: {exc}")
            return "query ended"
        if application_ended():
            raise StreamExit(
                "the stream's Spark application ended: its master removed it (a check on another host ended it "
                "through the master, or the master lost it)",
                "nothing to do: the supervisor starts the stream again from its checkpoint.",
                reason="application_ended",
                exit_code=1,
            )
        if stop.is_set():
            return "SIGTERM"
        try:
            reason = requested_stop(control)
            mirror()
        except Exception as exc:  # a store is the catalog's database (files do not fail like this)
            raise catalog_gone(
                f"the stream's control documents in the catalog's database are out of reach: {exc}"
            ) from exc
        if reason is not None:
            return reason
        if broker is not None:
            broker.check()
        if fence is not None and not fence.check():  # another host may take the stream now: stop writing
            raise catalog_gone("the stream lost its fence: its session with the catalog's database ended")
        set_status("running", heartbeat_at=time.time())
        housekeeping()


def requested_stop(control: StreamControl, now: float | None = None) -> str | None:
    """Why the stream should stop by request: ``k2 stream stop``, or a lease no check renewed."""
    if control.read("stop") is not None:
        return "stop requested"
    lease = control.read("lease")
    if lease is not None and float(lease.get("expires_at", 0)) <= (now or time.time()):
        return "supervisor lease expired (DAG paused or supervisor gone)"
    return None


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Kafka -> Bronze Iceberg stream for one exchange.")
    parser.add_argument("--exchange", required=True)
    args = parser.parse_args(argv)
    settings = load_settings()
    configure_logging(settings)
    return run(settings, args.exchange)
