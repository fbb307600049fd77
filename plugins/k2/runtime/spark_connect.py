"""Lifecycle of K2's embedded Spark Connect server: one warm Spark application on K2_SPARK_MASTER
that runs every batch and maintenance job, each Airflow task being a thin client of it. A task then
pays no JVM start, class loading or JIT warm-up (about a minute per task under the streams' load).

The server is ``spark-submit --class SparkConnectServer`` from pyspark's own jars, niced like the
batch, on 127.0.0.1 only. A client must present the token in ``$K2_HOME/run/spark-connect.token``
(0600, new at each start; the server reads it from its environment, never its command line).
`k2 up` starts it, `k2 down` stops it, and a job that finds it dead starts it again.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import fcntl
import os
import secrets
import socket
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import psutil

from k2.errors import K2Error
from k2.log import get_logger
from k2.private import write_private
from k2.runtime import procs
from k2.settings import Settings
from k2.spark import SPARK_SUBMIT, server_conf, spark_job

log = get_logger(__name__)

SERVER_CLASS = "org.apache.spark.sql.connect.service.SparkConnectServer"
TOKEN_ENV = "SPARK_CONNECT_AUTHENTICATE_TOKEN"  # read by the server (and by pyspark's client)
HOST = "127.0.0.1"
CLIENT_HOST = "localhost"  # pyspark sends a token without TLS only to a host named localhost
EXIT_ON_OOM = "-XX:+ExitOnOutOfMemoryError"
HOME_CONF = "spark.k2.home"  # on the server's command line: which state directory it belongs to
PORT_CONF = "spark.connect.grpc.binding.port"


@dataclass(frozen=True)
class ConnectServerStatus:
    running: bool
    pid: int | None
    endpoint: str
    log_file: Path


class LocalSparkConnectServer:
    """Start, stop and inspect the embedded Spark Connect server of ``settings``' state directory."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.port = settings.spark.connect_port
        self.pid_file = settings.run_dir / "spark-connect.pid"
        self.token_file = settings.run_dir / "spark-connect.token"
        self.lock_file = settings.run_dir / "spark-connect.lock"
        self.log_file = settings.logs_dir / "spark-connect" / "server.log"

    def status(self) -> ConnectServerStatus:
        pid = self._live_pid()
        return ConnectServerStatus(pid is not None, pid, f"{HOST}:{self.port}", self.log_file)

    def token(self) -> str:
        try:
            return self.token_file.read_text().strip()
        except FileNotFoundError as exc:
            raise K2Error(
                f"the Spark Connect server of {self.settings.home} has no token file {self.token_file}",
                "start it with `k2 up` (or any batch task starts it).",
            ) from exc

    def client_url(self) -> str:
        """The URL a pyspark client connects with (it carries the token: never log it)."""
        return f"sc://{CLIENT_HOST}:{self.port}/;token={self.token()}"

    def ensure_running(self) -> ConnectServerStatus:
        """The running server, started first if it is not, once it accepts clients."""
        self.start_in_background()
        self._wait_accepting()
        return self.status()

    def start_in_background(self) -> None:
        """Starts the server unless it runs (one starter at a time per state directory); no wait.
        This state directory's server on another port (K2_SPARK_CONNECT_PORT changed) is stopped
        first: left running, it would hold its memory with nothing left to stop it."""
        with self._locked():
            pid, port = self._server()
            if pid is not None and port != self.port:
                log.warning("spark_connect.port_changed", pid=pid, port=port, configured_port=self.port)
                procs.stop(self.pid_file)
            if self._live_pid() is None:
                self._spawn()

    def stop(self) -> bool:
        """SIGTERM, then SIGKILL after 30 s; running jobs fail (their tasks retry). False if none ran."""
        with self._locked():
            pid, _ = self._server()
            if pid is None:
                self.pid_file.unlink(missing_ok=True)
                return False
            log.info("spark_connect.stopping", pid=pid)
            return procs.stop(self.pid_file)

    # --- internals ---------------------------------------------------------------------------------
    def _spawn(self) -> None:
        procs.require_free_port(HOST, self.port, "K2_SPARK_CONNECT_PORT")
        token = secrets.token_urlsafe(32)
        write_private(self.token_file, token)
        job = spark_job(self.settings, name="k2-spark-connect", application=Path("spark-internal"))
        conf = server_conf(self.settings, "k2-spark-connect")
        conf.pop("spark.app.name")
        conf.update({"spark.connect.grpc.binding.address": HOST, PORT_CONF: str(self.port)})
        conf[HOME_CONF] = str(self.settings.home)
        # out of heap, a JVM can outlive its stopped SparkContext and keep accepting clients it
        # cannot serve; exiting lets the running job's watch fail its task, whose retry starts anew
        conf["spark.driver.extraJavaOptions"] = f"{conf['spark.driver.extraJavaOptions']} {EXIT_ON_OOM}"
        master = conf.pop("spark.master")
        args = [arg for key, value in conf.items() for arg in ("--conf", f"{key}={value}")]
        cmd = [SPARK_SUBMIT, "--master", master, "--name", "k2-spark-connect", "--class", SERVER_CLASS, *args]
        env = {**os.environ, **job.env, TOKEN_ENV: token}
        pid = procs.spawn(
            cmd, pid_file=self.pid_file, log_file=self.log_file, env=env, nice=self.settings.spark.batch_nice
        )
        log.info("spark_connect.starting", pid=pid, endpoint=f"{HOST}:{self.port}", master=master)

    def _wait_accepting(self) -> None:
        started = time.monotonic()
        deadline = started + self.settings.spark.connect_start_timeout_s
        waited = False
        while not _accepts(self.port):
            if procs.running_pid(self.pid_file) is None:  # (mid-exec, its command line may read empty)
                raise K2Error(
                    f"the Spark Connect server exited while starting (see {self.log_file})",
                    "fix the cause in that log (a port in use, too little memory), then re-run the task or `k2 up`.",
                )
            if time.monotonic() > deadline:
                raise K2Error(
                    f"the Spark Connect server did not accept clients within "
                    f"{self.settings.spark.connect_start_timeout_s:.0f}s (see {self.log_file})",
                    "give it more time with K2_SPARK_CONNECT_START_TIMEOUT_S, or run jobs with K2_SPARK_CONNECT=off.",
                )
            waited = True
            time.sleep(0.5)
        if waited:
            log.info("spark_connect.accepting", seconds_waited=round(time.monotonic() - started, 1))

    def _live_pid(self) -> int | None:
        """The server's pid if it runs on the configured port."""
        pid, port = self._server()
        return pid if port == self.port else None

    def _server(self) -> tuple[int | None, int | None]:
        """The pid file's process and its port, if it is this state directory's server (one started
        before servers carried their state directory counts by its port); else (None, None)."""
        pid = procs.owned_pid(self.pid_file, SERVER_CLASS)
        if pid is None:
            return None, None
        with contextlib.suppress(psutil.Error):
            cmdline = psutil.Process(pid).cmdline()
            confs = dict(arg.split("=", 1) for arg in cmdline if "=" in arg and arg.startswith("spark."))
            port = int(confs[PORT_CONF]) if confs.get(PORT_CONF, "").isdigit() else None
            if confs.get(HOME_CONF) == str(self.settings.home) or (HOME_CONF not in confs and port == self.port):
                return pid, port
        return None, None  # another state directory's server

    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        self.lock_file.parent.mkdir(parents=True, exist_ok=True)
        with self.lock_file.open("a") as fh:
            fcntl.flock(fh, fcntl.LOCK_EX)
            yield


def warm_up(settings: Settings) -> None:
    """Reads a row of each exchange's Bronze table and of Silver on the embedded server, in a session
    of its own, then rehearses Silver's transforms (k2.medallion.silver.rehearse), so the first batch
    task finds the Iceberg catalog's, the Parquet read path's and its plans' classes loaded and
    compiled: `k2 up`'s first Silver task read its Bronze rows in 14.2 s cold, 1.9 s after the
    warm-up (2026-12-04). A failure is logged: the task then pays it as before."""
    from k2.lake.names import bronze_id, qualified
    from k2.lake.tables import SILVER_TRADES
    from k2.medallion.interval import Interval
    from k2.medallion.silver import rehearse
    from k2.spark import remote_session

    started = time.monotonic()
    server = LocalSparkConnectServer(settings)
    try:
        server.ensure_running()
        spark = remote_session(settings, server.client_url())
        try:
            catalog = settings.lake.catalog_name
            for table in [*(bronze_id(ex) for ex in settings.exchanges), SILVER_TRADES.identifier]:
                spark.table(qualified(catalog, table)).limit(1).collect()
            now = dt.datetime.now(dt.UTC)
            for exchange in settings.exchanges:  # each has its own parser
                rehearse(spark, settings, Interval(exchange, now - dt.timedelta(minutes=1), now))
        finally:
            spark.stop()
    except Exception as exc:  # a convenience: the first task loads them itself
        log.warning("spark_connect.warm_up_failed", error=str(exc)[:300])
        return
    log.info("spark_connect.warmed_up", seconds=round(time.monotonic() - started, 1))


def _accepts(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.settimeout(1.0)
        return sock.connect_ex((HOST, port)) == 0
