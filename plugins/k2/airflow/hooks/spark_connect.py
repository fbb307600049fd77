"""The hook through which K2's Airflow tasks run Spark jobs on a Spark Connect server (the Apache
Spark provider's SparkConnectHook, with K2's defaults)."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import threading
import uuid
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

from airflow.providers.apache.spark.hooks.spark_connect import SparkConnectHook
from airflow.sdk import Connection
from airflow.sdk.exceptions import AirflowException

from k2.airflow.hooks import SettingsDefaultConnection
from k2.runtime.priority import lower_priority
from k2.settings import Settings
from k2.spark import REMOTE_ENV

INTERRUPT_TIMEOUT_S = 15.0
SERVER_CHECK_S = 5.0  # how often a running job looks whether the embedded server it runs on still runs


class K2SparkConnectHook(SettingsDefaultConnection, SparkConnectHook):
    """Runs one of K2's Spark jobs (a Python entry point) as a thin client of a Spark Connect server,
    owning the ``k2_spark_connect`` connection.

    The server comes from the connection when the deployment defines it (environment, secrets
    backend, UI: host, port, token as password); else from K2_SPARK_CONNECT, and for the embedded
    server, which this hook starts if it is not running, with the token of the state directory.
    The job gets a session id of its own, so killing the task interrupts exactly its Spark work.
    """

    default_conn_name = "k2_spark_connect"
    hook_name = "K2 Spark Connect"

    def __init__(
        self,
        settings: Settings,
        *,
        name: str,
        application: Path,
        application_args: list[str],
        nice: int = 0,
        conn_id: str = default_conn_name,
    ) -> None:
        super().__init__(conn_id=conn_id)
        self.settings = settings
        self.nice = nice
        self.name = name
        self.application = application
        self.application_args = list(application_args)
        self.session_id = str(uuid.uuid4())
        self._process: subprocess.Popen[str] | None = None
        self.interrupted: list[str] = []  # ids of the Spark operations on_kill interrupted

    @staticmethod
    def default_connection(settings: Settings, conn_id: str = default_conn_name) -> Connection:
        if settings.spark.connect_embedded:
            from k2.runtime.spark_connect import CLIENT_HOST, LocalSparkConnectServer

            server = LocalSparkConnectServer(settings)
            host, port, token = CLIENT_HOST, settings.spark.connect_port, server.token()
        else:
            url = urlparse(settings.spark.connect)
            host, port, token = url.hostname or CLIENT_HOST, url.port or 15002, None
        return Connection(conn_id=conn_id, conn_type="spark_connect", host=host, port=port, password=token)

    def session_url(self) -> str:
        """The connection's URL with this job's session id (it carries the token: never log it)."""
        return f"{self.get_connection_url()};session_id={self.session_id}"

    def submit(self) -> None:
        """Runs the job to its end, its output in the task log; raises if it failed, or at once if
        the embedded server it runs on exits meanwhile."""
        server, serving = None, None
        if self.settings.spark.connect_embedded:
            from k2.runtime.spark_connect import LocalSparkConnectServer

            server = LocalSparkConnectServer(self.settings)
            serving = server.ensure_running().pid
        env = {**os.environ, REMOTE_ENV: self.session_url()}
        cmd = [sys.executable, str(self.application), *self.application_args]
        self.log.info("running %s on Spark Connect (session %s)", self.name, self.session_id)
        self._process = subprocess.Popen(
            cmd,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            start_new_session=True,
            # the client validates small frames itself (GX on pandas): as low a priority as the server
            preexec_fn=lower_priority(self.nice) if self.nice else None,
        )
        assert self._process.stdout is not None
        ended, lost = threading.Event(), []
        if server is not None:
            threading.Thread(target=self._watch, args=(server, serving, ended, lost), daemon=True).start()
        try:
            for line in self._process.stdout:
                self.log.info("%s", line.rstrip())
            code = self._process.wait()
        finally:
            ended.set()
        if lost:
            raise AirflowException(lost[0])
        if code != 0:
            raise AirflowException(f"{self.name} exited with code {code}; its output is above")

    def _watch(self, server, serving: int | None, ended: threading.Event, lost: list[str]) -> None:
        """Ends the job when the server it runs on exits (out of memory, killed): its client would
        retry the connection for minutes, and the task would wait for its execution timeout."""
        process = self._process
        while not ended.wait(SERVER_CHECK_S):
            if server.status().pid == serving:
                continue
            lost.append(
                f"the Spark Connect server (pid {serving}) exited while {self.name} ran; its log: "
                f"{server.log_file}. The task's retry starts the server again."
            )
            self.log.error("%s", lost[0])
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)
            return

    def on_kill(self) -> None:
        """Interrupts the job's Spark operations on the server, then stops its client process."""
        process = self._process
        if process is None or process.poll() is not None:
            return
        worker = threading.Thread(target=self._interrupt_session, daemon=True)
        worker.start()
        worker.join(INTERRUPT_TIMEOUT_S)  # a server that does not answer must not hold the kill
        try:
            os.killpg(process.pid, signal.SIGTERM)
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass

    def _interrupt_session(self) -> None:
        try:
            # the bare client: SparkSession.builder.remote() would switch this whole process to
            # Spark Connect mode (pyspark sets SPARK_CONNECT_MODE_ENABLED in os.environ)
            from pyspark.sql.connect.client import SparkConnectClient

            client = SparkConnectClient(self.session_url())
            self.interrupted = client.interrupt_all() or []
            client.close()
            self.log.info("interrupted %d Spark operation(s) of %s", len(self.interrupted), self.name)
        except Exception as exc:  # the kill goes on: the server abandons the session's work on its own
            self.log.warning("could not interrupt %s's Spark session: %s", self.name, exc)


def spark_job_hook(
    settings: Settings, *, name: str, application: Path, application_args: list[str], nice: int = 0
) -> Any:
    """The hook that runs a batch or maintenance job where K2_SPARK_CONNECT says: a Spark Connect
    server, or (``off``) a spark-submit of its own; the job's own process at niceness ``nice``."""
    if settings.spark.connect == "off":
        from k2.airflow.hooks.spark import K2SparkSubmitHook

        return K2SparkSubmitHook(
            settings, name=name, application=application, application_args=application_args, nice=nice
        )
    return K2SparkConnectHook(
        settings, name=name, application=application, application_args=application_args, nice=nice
    )
