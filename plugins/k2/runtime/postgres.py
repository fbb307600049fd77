"""A PostgreSQL server for the scale-out form on one machine: the Iceberg JDBC catalog and Airflow's
metadata DB, run from the distribution's PostgreSQL programs (Debian's ``postgresql`` package;
``k2 system-packages`` installs it for the tests), as one detached process group with a pid file
and a log under K2_HOME, like the embedded Kafka and Spark cluster.

It listens on 127.0.0.1 only (K2_POSTGRES_PORT) and on a socket directory of its own, never on the
system's /var/run/postgresql. Every connection authenticates with scram-sha-256 as the superuser
``k2``, whose password is generated once into ``K2_HOME/postgres/password`` (0600). The password
reaches initdb through ``--pwfile`` and K2's clients through that file or the URLs ``uri()`` builds
(passed in the environment, never on a command line; K2's logs mask URL passwords).

Root: PostgreSQL refuses to run as root (CI runs as root). Then initdb and the server run as the
``postgres`` user (``setpriv``, which execs in place, so the pid file holds the server's own pid)
on a data directory that user owns. That directory cannot be under K2_HOME: K2_HOME and its parents
are 0700 to K2's user (k2.private), so ``postgres`` could not even reach it, and opening them up
would expose the catalog and the generated secrets. It lives in the ``postgres`` user's home
instead (``~postgres/k2-<hash of K2_HOME>``, 0700), one per K2_HOME, which is where Debian keeps
that user's clusters too. K2_HOME keeps the password and the log, as for a non-root user.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import pwd
import secrets
import shutil
import signal
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

from k2.errors import K2Error
from k2.log import get_logger
from k2.private import generated_secret, write_private
from k2.runtime import procs
from k2.settings import Settings

log = get_logger(__name__)

HOST = "127.0.0.1"
SUPERUSER = "k2"
DATABASES = ("catalog", "airflow")  # the Iceberg JDBC catalog, Airflow's metadata DB
SERVICE_USER = "postgres"  # the distribution's account for the server, used when K2 runs as root


@dataclass(frozen=True)
class PostgresStatus:
    running: bool
    pid: int | None
    port: int
    data_dir: Path
    log_file: Path


def password_file(home: Path) -> Path:
    return home / "postgres" / "password"


def superuser_password(home: Path) -> str:
    """The superuser's password of K2_HOME's server, generated (0600) on first use by any process."""
    return generated_secret(password_file(home), lambda: secrets.token_hex(24))  # URL-safe as it is


def outlived_its_password(data_dir: Path, password_file: Path) -> bool:
    """Whether ``data_dir`` was initialised before K2_HOME's password file was made: initdb takes the
    password from that file, so a newer file holds a password the server never had (K2_HOME was
    made anew at the same path)."""
    version = data_dir / "PG_VERSION"
    if not (password_file.is_file() and version.is_file()):
        return False
    return password_file.stat().st_mtime > version.stat().st_mtime


def embedded_uri(home: Path, port: int, database: str, driver: str = "psycopg2") -> str:
    """SQLAlchemy URL of a database of K2_HOME's server; it carries the password. With
    K2_POSTGRES_EMBEDDED, K2_CATALOG_URI and K2_AIRFLOW_DB_URI default to these."""
    scheme = f"postgresql+{driver}" if driver else "postgresql"
    return f"{scheme}://{SUPERUSER}:{superuser_password(home)}@{HOST}:{port}/{database}"


def find_bin_dir(configured: str = "") -> Path:
    """The directory of initdb and postgres: the setting, else ``pg_config --bindir``, else the newest
    /usr/lib/postgresql/<version>/bin (Debian and Ubuntu keep the server programs off PATH there)."""
    candidates: list[Path] = []
    if configured:
        candidates.append(Path(configured))
    else:
        pg_config = shutil.which("pg_config")
        if pg_config:
            with contextlib.suppress(OSError, subprocess.SubprocessError):
                out = subprocess.run([pg_config, "--bindir"], capture_output=True, text=True, timeout=10, check=False)
                if out.returncode == 0 and out.stdout.strip():
                    candidates.append(Path(out.stdout.strip()))
        candidates += sorted(Path("/usr/lib/postgresql").glob("*/bin"), key=_version_key, reverse=True)
    for directory in candidates:
        if (directory / "initdb").is_file() and (directory / "postgres").is_file():
            return directory
    raise K2Error(
        f"PostgreSQL's server programs (initdb, postgres) were not found in {[str(c) for c in candidates] or 'any'}",
        "install Debian's `postgresql` package (`k2 system-packages` does), or set K2_POSTGRES_BIN_DIR to the "
        "directory holding initdb and postgres.",
    )


def _version_key(path: Path) -> tuple[int, ...]:
    version = path.parent.name
    return tuple(int(p) for p in version.split(".") if p.isdigit()) or (0,)


class LocalPostgres:
    """Start, stop and inspect the PostgreSQL server of ``settings``' state directory."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.port = settings.postgres.port
        self.state_dir = settings.home / "postgres"
        self.password_file = password_file(settings.home)
        self.log_file = settings.logs_dir / "postgres.log"
        self.pid_file = settings.run_dir / "postgres.pid"
        self.as_root = os.geteuid() == 0
        if self.as_root:
            tag = hashlib.sha256(str(settings.home).encode()).hexdigest()[:12]
            self.root = Path(pwd.getpwnam(SERVICE_USER).pw_dir) / f"k2-{tag}"
        else:
            self.root = self.state_dir
        self.data_dir = self.root / "data"
        self.socket_dir = self.root / "socket"

    # --- lifecycle ---------------------------------------------------------------------------------
    def ensure_running(self, timeout_s: float = 60.0) -> None:
        """Initialised, running, accepting the password, with K2's databases; idempotent."""
        if self.pid() is None:
            procs.require_free_port(HOST, self.port, "K2_POSTGRES_PORT")
            self.password()  # generated now if K2_HOME has none yet
            if not (self.data_dir / "PG_VERSION").is_file():
                self._initdb()
            elif self.root != self.state_dir and outlived_its_password(self.data_dir, self.password_file):
                # as root the data directory is outside K2_HOME and outlives it
                raise K2Error(
                    f"the PostgreSQL data directory {self.root} was made for an earlier K2_HOME at "
                    f"{self.settings.home}, whose password file went with it: the server would refuse this one",
                    f"remove it to start afresh (`rm -rf {self.root}`; its catalog named that K2_HOME's files), "
                    "or put the earlier K2_HOME back.",
                )
            self._start()
        self._wait_ready(timeout_s)
        self._create_databases()

    def stop(self, timeout_s: float = 30.0) -> bool:
        """Fast shutdown (SIGINT: clients are disconnected, a checkpoint is written); False if not running."""
        pid = self.pid()
        if pid is None:
            self.pid_file.unlink(missing_ok=True)
            return False
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGINT)
        deadline = time.monotonic() + timeout_s
        while self.pid() is not None and time.monotonic() < deadline:
            time.sleep(0.1)
        procs.stop(self.pid_file, timeout_s=5)  # SIGTERM, then SIGKILL, whatever is left of the group
        log.info("postgres.stopped", port=self.port)
        return True

    def reset(self) -> None:
        """Stop the server and delete its data directory (the databases with it) and the password."""
        self.stop()
        shutil.rmtree(self.data_dir, ignore_errors=True)
        shutil.rmtree(self.socket_dir, ignore_errors=True)
        if self.root != self.state_dir:
            shutil.rmtree(self.root, ignore_errors=True)
        self.password_file.unlink(missing_ok=True)

    def kill(self) -> None:
        """SIGKILL the server and every backend, as a crash of its host would (tests, drills)."""
        pid = self.pid()
        if pid is None:
            raise K2Error("the PostgreSQL server is not running", "start it first.")
        os.killpg(pid, signal.SIGKILL)
        deadline = time.monotonic() + 10
        while procs.running_pid(self.pid_file) is not None and time.monotonic() < deadline:
            time.sleep(0.05)

    # --- inspection --------------------------------------------------------------------------------
    def pid(self) -> int | None:
        return procs.owned_pid(self.pid_file, str(self.data_dir))

    def status(self) -> PostgresStatus:
        pid = self.pid()
        return PostgresStatus(pid is not None, pid, self.port, self.data_dir, self.log_file)

    def password(self) -> str:
        """The superuser's password, generated into K2_HOME/postgres/password (0600) on first use."""
        return superuser_password(self.settings.home)

    def uri(self, database: str, driver: str = "psycopg2") -> str:
        """SQLAlchemy URL of ``database`` (K2_CATALOG_URI, K2_AIRFLOW_DB_URI); it carries the password."""
        return embedded_uri(self.settings.home, self.port, database, driver)

    def where(self) -> str:
        """Address and databases, as status shows them (no password)."""
        return f"{HOST}:{self.port}/{','.join(DATABASES)}"

    def connect(self, database: str = "postgres"):
        import psycopg2

        return psycopg2.connect(
            host=HOST, port=self.port, user=SUPERUSER, password=self.password(), dbname=database, connect_timeout=5
        )

    # --- internals ---------------------------------------------------------------------------------
    def _initdb(self) -> None:
        bin_dir = find_bin_dir(self.settings.postgres.bin_dir)
        password = self.password()
        if self.data_dir.exists():  # a half-made directory of an initdb that failed
            shutil.rmtree(self.data_dir)
        self._make_own_dirs()
        # initdb reads the password from a file the server's user can read; removed right after
        pwfile = self.root / ".pwfile"
        write_private(pwfile, password + "\n")
        self._chown(pwfile)
        try:
            cmd = [str(bin_dir / "initdb"), "-D", str(self.data_dir), "-U", SUPERUSER, f"--pwfile={pwfile}",
                   "--auth-host=scram-sha-256", "--auth-local=scram-sha-256", "-E", "UTF8", "--no-locale"]  # fmt: skip
            result = subprocess.run(
                self._as_service_user(cmd), capture_output=True, text=True, check=False, cwd=self.root
            )
        finally:
            pwfile.unlink(missing_ok=True)
        if result.returncode != 0:
            raise K2Error(
                f"initdb failed for {self.data_dir}:\n{(result.stderr or result.stdout)[-2000:]}",
                "fix the cause above (disk space, permissions of that directory), then start again.",
            )
        log.info("postgres.initialised", data_dir=str(self.data_dir), bin_dir=str(bin_dir))

    def _start(self) -> None:
        bin_dir = find_bin_dir(self.settings.postgres.bin_dir)
        self._make_own_dirs()
        cmd = [str(bin_dir / "postgres"), "-D", str(self.data_dir), "-c", f"listen_addresses={HOST}",
               "-c", f"port={self.port}", "-c", f"unix_socket_directories={self.socket_dir}",
               "-c", "max_connections=200",  # Airflow's components and workers each keep a pool
               "-c", "shared_buffers=64MB", "-c", "fsync=on"]  # fmt: skip
        env = {k: v for k, v in os.environ.items() if not k.startswith("PG")}
        pid = procs.spawn(self._as_service_user(cmd), pid_file=self.pid_file, log_file=self.log_file, env=env)
        log.info("postgres.starting", pid=pid, port=self.port, data_dir=str(self.data_dir))

    def _wait_ready(self, timeout_s: float) -> None:
        import psycopg2

        deadline = time.monotonic() + timeout_s
        error = ""
        while time.monotonic() < deadline:
            # alive is enough here: the pid file was just written, and while setpriv execs the server
            # its command line reads empty for a moment, so pid()'s reuse check would call it gone
            if procs.running_pid(self.pid_file) is None:
                raise K2Error(
                    f"the PostgreSQL server exited while starting; the end of {self.log_file}:\n"
                    + procs.log_tail(self.log_file),
                    "fix the cause above (a port in use: K2_POSTGRES_PORT), then start again.",
                )
            try:
                self.connect().close()
                log.info("postgres.ready", port=self.port)
                return
            except psycopg2.OperationalError as exc:
                error = str(exc).strip()
            time.sleep(0.2)
        raise K2Error(
            f"PostgreSQL did not accept connections on {HOST}:{self.port} within {timeout_s:.0f}s: {error}",
            f"see {self.log_file}.",
        )

    def _create_databases(self) -> None:
        conn = self.connect()
        conn.autocommit = True  # CREATE DATABASE cannot run in a transaction
        try:
            with conn.cursor() as cur:
                cur.execute("SELECT datname FROM pg_database")
                present = {row[0] for row in cur.fetchall()}
                for name in DATABASES:
                    if name not in present:
                        cur.execute(f'CREATE DATABASE "{name}"')
                        log.info("postgres.database_created", database=name)
        finally:
            conn.close()

    def _make_own_dirs(self) -> None:
        for directory in (self.root, self.socket_dir):
            directory.mkdir(mode=0o700, parents=True, exist_ok=True)
            self._chown(directory)
        self.settings.logs_dir.mkdir(parents=True, exist_ok=True)

    def _chown(self, path: Path) -> None:
        if self.as_root:
            account = pwd.getpwnam(SERVICE_USER)
            os.chown(path, account.pw_uid, account.pw_gid)

    def _as_service_user(self, cmd: list[str]) -> list[str]:
        if not self.as_root:
            return cmd
        setpriv = shutil.which("setpriv")
        if setpriv is None:
            raise K2Error(
                "running as root, and `setpriv` (util-linux) is not on PATH to run PostgreSQL as its own user",
                "install util-linux, or run K2 as a non-root user.",
            )
        return [setpriv, f"--reuid={SERVICE_USER}", f"--regid={SERVICE_USER}", "--init-groups", "--", *cmd]
