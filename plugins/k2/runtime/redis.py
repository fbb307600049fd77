"""The Redis server that brokers Airflow's CeleryExecutor on one machine: the distribution's
``redis-server`` (Debian's package; ``k2 system-packages`` installs it for the tests), a detached
process with a pid file and a log under K2_HOME like K2's other servers.

It listens on 127.0.0.1 only (K2_AIRFLOW_REDIS_PORT), in protected mode, and every client must
authenticate: the password is generated once into ``K2_HOME/redis/password`` (0600) and written
into the server's configuration file (0600 too), which is what the command line names, so the
password is on no command line. It keeps nothing on disk: Celery's queue is transient (a lost
message is a task the scheduler requeues), and the results live in Airflow's database.
"""

from __future__ import annotations

import contextlib
import secrets
import shutil
import socket
import time

import psutil

from k2.errors import K2Error
from k2.log import get_logger
from k2.private import private_dir, restrict_file, write_private
from k2.runtime import procs
from k2.settings import Settings

log = get_logger(__name__)

HOST = "127.0.0.1"


class LocalRedis:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.port = settings.airflow.redis_port
        self.dir = settings.home / "redis"
        self.password_file = self.dir / "password"
        self.conf_file = self.dir / "redis.conf"
        self.pid_file = settings.run_dir / "redis.pid"
        self.log_file = settings.logs_dir / "redis.log"

    def password(self) -> str:
        private_dir(self.dir)
        if self.password_file.is_file():
            restrict_file(self.password_file)
            return self.password_file.read_text().strip()
        value = secrets.token_hex(24)  # URL-safe: it goes into the broker URL as it is
        write_private(self.password_file, value + "\n")
        return value

    def url(self, db: int = 0) -> str:
        """The broker URL for Celery (AIRFLOW__CELERY__BROKER_URL); it carries the password."""
        return f"redis://:{self.password()}@{HOST}:{self.port}/{db}"

    def ensure_running(self, timeout_s: float = 30.0) -> None:
        if self.pid() is None:
            server = shutil.which("redis-server")
            if server is None:
                raise K2Error(
                    "redis-server is not on PATH (the CeleryExecutor's broker)",
                    "install Debian's `redis-server` package (`k2 system-packages` does), or use LocalExecutor.",
                )
            procs.require_free_port(HOST, self.port, "K2_AIRFLOW_REDIS_PORT")
            self._write_conf()
            pid = procs.spawn([server, str(self.conf_file)], pid_file=self.pid_file, log_file=self.log_file)
            log.info("redis.starting", pid=pid, port=self.port)
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.pid() is None:
                raise K2Error(f"redis-server exited while starting (see {self.log_file})", "fix the cause there.")
            if self.ping():
                log.info("redis.ready", port=self.port)
                return
            time.sleep(0.1)
        raise K2Error(f"Redis did not answer on {HOST}:{self.port} within {timeout_s:.0f}s", f"see {self.log_file}.")

    def stop(self, timeout_s: float = 15.0) -> bool:
        return procs.stop(self.pid_file, timeout_s)

    def pid(self) -> int | None:
        pid = procs.running_pid(self.pid_file)
        if pid is None:
            return None
        with contextlib.suppress(psutil.Error):
            if "redis-server" in psutil.Process(pid).name():
                return pid
        return None

    def ping(self) -> bool:
        """AUTH then PING over the wire protocol: True once the server answers both."""
        password = self.password()
        command = f"*2\r\n$4\r\nAUTH\r\n${len(password)}\r\n{password}\r\n*1\r\n$4\r\nPING\r\n".encode()
        try:
            with socket.create_connection((HOST, self.port), timeout=2) as sock:
                sock.sendall(command)
                reply = b""
                while reply.count(b"\r\n") < 2:
                    chunk = sock.recv(256)
                    if not chunk:
                        break
                    reply += chunk
        except OSError:
            return False
        return reply == b"+OK\r\n+PONG\r\n"

    def _write_conf(self) -> None:
        lines = [
            f"bind {HOST}",
            f"port {self.port}",
            "protected-mode yes",
            f"requirepass {self.password()}",
            f"dir {self.dir}",
            'save ""',
            "appendonly no",
            "daemonize no",
            "loglevel notice",
            'logfile ""',  # stdout: the log file procs.spawn opened
        ]
        write_private(self.conf_file, "\n".join(lines) + "\n")
