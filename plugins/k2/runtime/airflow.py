"""Airflow on the embedded stack: API server (UI), scheduler, DAG processor, triggerer and the log
server, each a detached process on 127.0.0.1 with a pid file and a log under K2_HOME, sharing one generated
configuration. Login is required (SimpleAuthManager); the password and the signing secrets are
generated into K2_HOME/airflow (0700, files 0600) on first start and never written anywhere else:
K2 writes the password file itself, because SimpleAuthManager prints the passwords it generates
into the API server's log.

Scale-out on one machine: with K2_AIRFLOW_EXECUTOR=CeleryExecutor (K2_AIRFLOW_DB_URI on PostgreSQL;
k2.runtime.postgres runs one) it also starts a Redis broker (k2.runtime.redis) and
K2_AIRFLOW_CELERY_WORKERS Celery workers, each a process of its own named ``k2-worker-<n>``, which
run the tasks the scheduler queues; the results go to Airflow's database."""

from __future__ import annotations

import json
import os
import secrets
import socket
import ssl
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from k2.airflow.install import INIT_COLUMNS
from k2.errors import K2Error
from k2.log import get_logger
from k2.private import private_dir, restrict_file, write_private
from k2.resources import DAGS_DIR
from k2.runtime import airflow_sqlite, procs
from k2.runtime.redis import LocalRedis
from k2.settings import Settings

log = get_logger(__name__)

COMPONENTS = ("api-server", "scheduler", "dag-processor", "triggerer", "log-server")
CELERY_WORKER = "celery-worker-"  # + n: the components the CeleryExecutor adds
LOG_SERVER = "log-server"
AUTH_MANAGER = "airflow.api_fastapi.auth.managers.simple.simple_auth_manager.SimpleAuthManager"


@dataclass(frozen=True)
class ComponentStatus:
    name: str
    pid: int | None
    log_file: Path


class AirflowServices:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.home = settings.home / "airflow"
        self.log_dir = settings.logs_dir / "airflow"
        scheme = "https" if settings.airflow.tls else "http"
        self.url = f"{scheme}://{settings.airflow.host}:{settings.airflow.port}"
        self.celery = is_celery(settings.airflow.executor)
        self.redis = LocalRedis(settings) if self.celery else None

    @property
    def components(self) -> tuple[str, ...]:
        """Airflow's processes K2 runs: the Celery workers too with the CeleryExecutor."""
        workers = range(1, self.settings.airflow.celery_workers + 1) if self.celery else range(0)
        return (*COMPONENTS, *(f"{CELERY_WORKER}{n}" for n in workers))

    @property
    def passwords_file(self) -> Path:
        return self.home / "passwords.json"

    def environment(self) -> dict[str, str]:
        """The whole Airflow configuration, as environment variables for every component."""
        secrets_ = self._secrets()
        self.ensure_password()
        env = {k: v for k, v in os.environ.items() if not k.startswith("AIRFLOW__")}
        env.update(
            {
                "AIRFLOW_HOME": str(self.home),
                "AIRFLOW__CORE__DAGS_FOLDER": str(DAGS_DIR),
                # K2's plugin comes from its entry point; this folder stays empty (AIRFLOW_HOME's default)
                "AIRFLOW__CORE__PLUGINS_FOLDER": str(self.home / "plugins"),
                "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
                "AIRFLOW__CORE__EXECUTOR": self.settings.airflow.executor,
                "AIRFLOW__CORE__PARALLELISM": "16",
                "AIRFLOW__CORE__FERNET_KEY": secrets_["fernet_key"],
                "AIRFLOW__CORE__AUTH_MANAGER": AUTH_MANAGER,
                "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS": f"{self.settings.airflow.admin_user}:admin",
                "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE": str(self.passwords_file),
                "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": f"{self.url}/execution/",
                "AIRFLOW__API__HOST": self.settings.airflow.host,
                "AIRFLOW__API__PORT": str(self.settings.airflow.port),
                "AIRFLOW__API__BASE_URL": self.url,
                "AIRFLOW__API__WORKERS": "1",
                "AIRFLOW__API__SECRET_KEY": secrets_["api_secret_key"],
                "AIRFLOW__API_AUTH__JWT_SECRET": secrets_["jwt_secret"],
                "AIRFLOW__SCHEDULER__STANDALONE_DAG_PROCESSOR": "True",
                "AIRFLOW__DAG_PROCESSOR__REFRESH_INTERVAL": "30",
                # K2's DAG files change with a deployment, not by the minute: parse each every 2 min,
                # not every 30 s (CPU the streams need on two cores)
                "AIRFLOW__DAG_PROCESSOR__MIN_FILE_PROCESS_INTERVAL": "120",
                "AIRFLOW__LOGGING__BASE_LOG_FOLDER": str(self.log_dir / "tasks"),
                # one log server of K2's own (k2.runtime.airflow_logs) on K2_AIRFLOW_HOST, not one per
                # component on every interface; task instances record that address as their host
                "AIRFLOW__LOGGING__WORKER_LOG_SERVER_PORT": str(self.settings.airflow.log_server_port),
                "AIRFLOW__LOGGING__TRIGGERER_LOG_SERVER_PORT": str(self.settings.airflow.log_server_port),
                "AIRFLOW__CORE__HOSTNAME_CALLABLE": "k2.runtime.airflow_logs.hostname",
                "K2_HOME": str(self.settings.home),
                "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}",
            }
        )
        env.update(airflow_sqlite.database_env(self.settings.airflow.db_uri))
        if self.redis is not None:  # broker URL and result backend carry passwords: environment only
            env["AIRFLOW__CELERY__BROKER_URL"] = self.redis.url()
            env["AIRFLOW__CELERY__RESULT_BACKEND"] = "db+" + self.settings.airflow.db_uri
            env["AIRFLOW__CELERY__WORKER_CONCURRENCY"] = str(self.settings.airflow.celery_concurrency)
        if self.settings.airflow.tls:
            # the API server serves it; task processes and K2 trust it as their CA
            env["AIRFLOW__API__SSL_CERT"] = self.settings.airflow.tls_cert
            env["AIRFLOW__API__SSL_KEY"] = self.settings.airflow.tls_key
        return env

    def _secrets(self) -> dict[str, str]:
        """Per-installation secrets, generated once, readable by this user only."""
        path = self.home / "secrets.json"
        private_dir(self.home)
        if path.exists():
            restrict_file(path)
            return json.loads(path.read_text())
        from cryptography.fernet import Fernet

        values = {
            "fernet_key": Fernet.generate_key().decode(),
            "api_secret_key": secrets.token_urlsafe(32),
            "jwt_secret": secrets.token_urlsafe(48),
        }
        write_private(path, json.dumps(values))
        return values

    def ensure_password(self) -> str:
        """The admin's password, generated into the passwords file (0600) before Airflow starts:
        SimpleAuthManager then finds the user there and neither generates nor prints one."""
        user = self.settings.airflow.admin_user
        passwords: dict[str, str] = {}
        if self.passwords_file.exists():
            restrict_file(self.passwords_file)  # one written by Airflow itself before K2 did this
            try:
                passwords = json.loads(self.passwords_file.read_text() or "{}")
            except ValueError as exc:
                raise K2Error(
                    f"{self.passwords_file} is not valid JSON",
                    "delete it: `k2 up` writes a new admin password there.",
                ) from exc
            if passwords.get(user):
                return passwords[user]
        passwords[user] = secrets.token_urlsafe(18)
        write_private(self.passwords_file, json.dumps(passwords) + "\n")
        return passwords[user]

    # --- lifecycle -------------------------------------------------------------------------------

    def start(self, timeout_s: float = 180.0) -> None:
        running = [c.name for c in self.status() if c.pid]
        if self.redis is not None:
            self.redis.ensure_running()  # the scheduler queues to it, the workers take from it
        if set(running) >= set(self.components):
            return
        procs.require_free_port(self.settings.airflow.host, self.settings.airflow.port, "K2_AIRFLOW_PORT")
        if LOG_SERVER not in running:
            port = self.settings.airflow.log_server_port
            procs.require_free_port(self.settings.airflow.host, port, "K2_AIRFLOW_LOG_SERVER_PORT")
        self.init(migrate=True)
        env = self.environment()
        for name in self.components:
            if name in running:
                continue
            own_env = env
            if name.startswith(CELERY_WORKER):
                # SIGTERM (`k2 down`) is a cold shutdown: the worker cancels its running tasks, as the
                # LocalExecutor's end with the scheduler. A warm one would wait for a batch task.
                own_env = {**env, "REMAP_SIGTERM": "SIGQUIT"}
            pid = procs.spawn(
                self._command(name), pid_file=self._pid_file(name), log_file=self.log_dir / f"{name}.log", env=own_env
            )
            log.info("airflow.started", component=name, pid=pid, log=str(self.log_dir / f"{name}.log"))
        self.wait_ready(timeout_s)

    def init(self, *, migrate: bool = False) -> None:
        """K2's pools and variables in this Airflow: `k2 airflow init`, run in Airflow's environment;
        with ``migrate``, after `airflow db migrate` in the same process."""
        private_dir(self.home)
        self.log_dir.mkdir(parents=True, exist_ok=True)
        if migrate:
            log.info("airflow.migrating", db=self.settings.airflow.db_uri.split("@")[-1])
        result = subprocess.run(
            [sys.executable, "-m", "k2.cli", "airflow", "init", *(["--migrate"] if migrate else [])],
            env=self.environment(),
            capture_output=True,
            text=True,
            check=False,
        )
        if result.returncode != 0:
            step = "`airflow db migrate` then `k2 airflow init`" if migrate else "`k2 airflow init`"
            raise K2Error(
                f"{step} failed:\n{(result.stderr or result.stdout)[-2000:]}",
                "check K2_AIRFLOW_DB_URI and that the database is reachable; `k2 down` then `k2 up` retries.",
            )
        if migrate and (db_file := airflow_sqlite.database_file(self.settings.airflow.db_uri)):
            log.info("airflow.sqlite", journal_mode=airflow_sqlite.use_wal(db_file))
        # the table's rows, below its header and rule (`airflow db migrate` may print before it)
        lines = result.stdout.strip().splitlines()
        header = next((i for i, line in enumerate(lines) if tuple(line.split()) == INIT_COLUMNS), 0)
        rows = lines[header + 2 :]
        log.info("airflow.initialised", report="; ".join(" ".join(row.split()) for row in rows))

    def wait_ready(self, timeout_s: float) -> None:
        deadline = time.monotonic() + timeout_s
        next_note = time.monotonic() + 15
        while time.monotonic() < deadline:
            dead = [c.name for c in self.status() if c.pid is None]
            if dead:
                raise K2Error(
                    f"Airflow {', '.join(dead)} exited during start-up; see {self.log_dir}",
                    "read the component log; `k2 down` then `k2 up` retries.",
                )
            if self._healthy():
                log.info("airflow.ready", url=self.url)
                return
            if time.monotonic() > next_note:
                log.info("airflow.waiting", url=self.url)
                next_note = time.monotonic() + 15
            time.sleep(1)
        raise K2Error(
            f"Airflow did not become healthy at {self.url} within {timeout_s:.0f}s", f"see the logs in {self.log_dir}."
        )

    def _healthy(self) -> bool:
        try:
            with urllib.request.urlopen(
                f"{self.url}/api/v2/monitor/health", timeout=3, context=self.ssl_context()
            ) as response:
                health = json.loads(response.read())
        except (urllib.error.URLError, OSError, ValueError):
            return False
        return all(health.get(k, {}).get("status") == "healthy" for k in ("metadatabase", "scheduler"))

    def ssl_context(self) -> ssl.SSLContext | None:
        """Trust the API server's own certificate (often self-signed) when TLS is on."""
        return ssl.create_default_context(cafile=self.settings.airflow.tls_cert) if self.settings.airflow.tls else None

    def stop(self, timeout_s: float = 30.0) -> list[str]:
        pid_files = [self._pid_file(name) for name in self.components]
        # running tasks first, while the API server they report to still runs: the scheduler and
        # Celery workers wait for them (a batch task runs for minutes) before they exit
        procs.concurrently([lambda f=f: procs.stop_groups(f, timeout_s) for f in pid_files])
        results = procs.stop_all(pid_files, timeout_s)
        stopped = [name for name, was_running in zip(self.components, results, strict=True) if was_running]
        if self.redis is not None and self.redis.stop():  # after the scheduler and the workers
            stopped.append("redis")
        return stopped

    def status(self) -> list[ComponentStatus]:
        rows = [
            ComponentStatus(name, procs.running_pid(self._pid_file(name)), self.log_dir / f"{name}.log")
            for name in self.components
        ]
        if self.redis is not None:
            rows.append(ComponentStatus("redis", self.redis.pid(), self.redis.log_file))
        return rows

    def password(self) -> str | None:
        try:
            return json.loads(self.passwords_file.read_text()).get(self.settings.airflow.admin_user)
        except (OSError, ValueError):
            return None

    def cli(self, *args: str, check: bool = True) -> subprocess.CompletedProcess:
        """Run an `airflow` CLI command against this installation."""
        result = subprocess.run(
            [self._airflow(), *args], env=self.environment(), capture_output=True, text=True, check=False
        )
        if check and result.returncode != 0:
            raise K2Error(
                f"`airflow {' '.join(args)}` failed:\n{(result.stderr or result.stdout)[-1500:]}",
                f"see the Airflow logs in {self.log_dir}.",
            )
        return result

    def dag_runs(self, dag_id: str) -> list[dict]:
        """The DAG's runs (run_id, state, dates) as the CLI reports them."""
        out = self.cli("dags", "list-runs", dag_id, "-o", "json").stdout
        for line in reversed(out.splitlines()):  # warnings may come first, on stdout too
            if line.startswith("["):
                try:
                    return json.loads(line)
                except ValueError:
                    continue
        return []

    def _pid_file(self, name: str) -> Path:
        self.settings.run_dir.mkdir(parents=True, exist_ok=True)
        return self.settings.run_dir / f"airflow-{name}.pid"

    def _command(self, name: str) -> list[str]:
        if name == LOG_SERVER:
            return [sys.executable, "-m", "k2.runtime.airflow_logs"]
        if name in ("scheduler", "triggerer"):  # logs served by LOG_SERVER on loopback
            return [self._airflow(), name, "--skip-serve-logs"]
        if name.startswith(CELERY_WORKER):
            return [self._airflow(), "celery", "worker", "--celery-hostname", worker_hostname(name),
                    "--concurrency", str(self.settings.airflow.celery_concurrency), "--skip-serve-logs",
                    "--without-gossip", "--without-mingle"]  # fmt: skip
        return [self._airflow(), name]

    def _airflow(self) -> str:
        return str(Path(sys.executable).parent / "airflow")


def worker_hostname(component: str) -> str:
    """Celery's name of a worker component (celery-worker-<n>): k2-worker-<n>@<this host>."""
    return f"k2-worker-{component.removeprefix(CELERY_WORKER)}@{socket.gethostname()}"


def is_celery(executor: str) -> bool:
    return executor.rsplit(".", 1)[-1] == "CeleryExecutor"
