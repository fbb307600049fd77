"""Lifecycle of K2's embedded Apache Kafka (KRaft, no ZooKeeper): one node by default, or a local
cluster of K2_KAFKA_NODES nodes, each a broker and a controller in a process of its own.

A node runs from the jars Maven fetched (``java -cp <K2_JARS_DIR>/kafka-broker/* kafka.Kafka``) with its
data under ``$K2_HOME/kafka/data`` (``kafka/node-N/data`` in a cluster) and its logs under
``$K2_HOME/logs/kafka`` (``.../node-N``). Two guards keep a second broker off the same data
directory: the pid file, and Kafka's own lock on ``data/.lock``, which is probed before start so the
refusal also holds when the pid file was lost. :class:`LocalKafka` starts and stops all nodes.
"""

from __future__ import annotations

import base64
import contextlib
import fcntl
import json
import os
import shutil
import signal
import subprocess
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

import psutil

from k2.errors import K2Error
from k2.jvm import installed_jars, require_java
from k2.kafka.clients import broker_reachable
from k2.kafka.topics import min_insync_replicas
from k2.log import get_logger
from k2.runtime.procs import concurrently, log_tail, require_free_port
from k2.settings import Settings

log = get_logger(__name__)


@dataclass(frozen=True)
class BrokerStatus:
    running: bool
    pid: int | None
    bootstrap_servers: str
    data_dir: Path
    log_file: Path


class LocalKafkaBroker:
    """Start, stop and inspect one node (``node``, from 1) of the embedded Kafka."""

    def __init__(self, settings: Settings, node: int = 1) -> None:
        self.settings = settings
        self.node = node
        single = settings.kafka.nodes == 1
        base = settings.kafka_dir if single else settings.kafka_dir / f"node-{node}"
        self.data_dir = base / "data"
        self.config_file = base / "server.properties"
        self.log4j_file = base / "log4j2.properties"
        self.log_dir = settings.logs_dir / "kafka" if single else settings.logs_dir / "kafka" / f"node-{node}"
        self.pid_file = settings.run_dir / ("kafka.pid" if single else f"kafka-{node}.pid")
        self.port, self.controller_port = settings.kafka.node_ports()[node - 1]
        self.bootstrap = f"{settings.kafka.host}:{self.port}"

    # --- inspection ------------------------------------------------------------------------------
    def status(self) -> BrokerStatus:
        pid = self._live_pid()
        return BrokerStatus(pid is not None, pid, self.bootstrap, self.data_dir, self.log_dir / "server.log")

    def _live_pid(self) -> int | None:
        """The broker's pid if the pid file names a live broker process on our config."""
        try:
            pid = int(json.loads(self.pid_file.read_text())["pid"])
        except FileNotFoundError:
            return None
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise K2Error(
                f"cannot read the broker pid file {self.pid_file}: {exc}",
                "check its permissions; if no broker runs, remove that file.",
            ) from exc
        return pid if _is_broker_process(pid, self.config_file) else None

    def data_dir_locked(self) -> bool:
        """True while some broker process holds Kafka's lock on the data directory."""
        lock = self.data_dir / ".lock"
        if not lock.exists():
            return False
        with lock.open("a") as fh:
            try:
                fcntl.lockf(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError:
                return True
            fcntl.lockf(fh, fcntl.LOCK_UN)
        return False

    # --- start -----------------------------------------------------------------------------------
    def start(self) -> BrokerStatus:
        """Format on first use, launch, and wait until the broker answers clients."""
        proc = self.launch()
        self.wait_ready(proc)
        return self.status()

    def launch(self, cluster_id: str | None = None) -> subprocess.Popen:
        """Format on first use (with ``cluster_id``, shared by a cluster's nodes) and start the process."""
        if not self.settings.kafka.embedded:
            raise K2Error(
                "K2_KAFKA_EMBEDDED is false: K2 uses the cluster at "
                f"{self.settings.kafka.bootstrap_servers} and starts no broker",
                "unset K2_KAFKA_EMBEDDED to run the embedded broker.",
            )
        pid = self._live_pid()
        if pid is not None:
            raise K2Error(
                f"a K2 broker already runs on {self.data_dir} (pid {pid})",
                "use it, or stop it first with `k2 kafka stop`.",
            )
        if self.data_dir_locked():
            raise K2Error(
                f"another Kafka broker holds the lock on {self.data_dir}",
                "stop that broker (see `ps aux | grep kafka.Kafka`) before starting this one.",
            )
        java = require_java(self.settings.jvm)
        jars = installed_jars(self.settings.jvm).kafka_broker
        for port in (self.port, self.controller_port):
            require_free_port(self.settings.kafka.host, port, "K2_KAFKA_PORT / K2_KAFKA_CONTROLLER_PORT")
        self._prepare_dirs()
        self._write_config()
        if not (self.data_dir / "meta.properties").exists():
            self._format(java, jars, cluster_id or new_cluster_id())
        else:
            self._check_formatted()

        cmd = [
            java,
            f"-Xmx{self.settings.kafka.heap}",
            f"-Xms{self.settings.kafka.heap}",
            "-XX:+UseG1GC",
            "-XX:MaxGCPauseMillis=20",
            "-Djava.awt.headless=true",
            f"-Dlog4j2.configurationFile={self.log4j_file}",
            f"-Dkafka.logs.dir={self.log_dir}",
            "-cp",
            os.pathsep.join(str(j) for j in jars),
            "kafka.Kafka",
            str(self.config_file),
        ]
        stdout = (self.log_dir / "stdout.log").open("ab")
        proc = subprocess.Popen(
            cmd, stdout=stdout, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True
        )
        stdout.close()
        self.pid_file.write_text(
            json.dumps(
                {
                    "pid": proc.pid,
                    "data_dir": str(self.data_dir),
                    "bootstrap": self.bootstrap,
                    "started_at": time.time(),
                }
            )
        )
        log.info("broker.starting", node=self.node, pid=proc.pid, bootstrap=self.bootstrap, data_dir=str(self.data_dir))
        return proc

    def ensure_running(self) -> BrokerStatus:
        """Idempotent start, for ``k2 up``."""
        status = self.status()
        return status if status.running else self.start()

    def _prepare_dirs(self) -> None:
        for directory in (self.config_file.parent, self.log_dir, self.settings.run_dir):
            try:
                directory.mkdir(parents=True, exist_ok=True)
            except OSError as exc:
                raise K2Error(
                    f"cannot create {directory}: {exc.strerror}",
                    "make K2_HOME writable for this user, or point K2_HOME elsewhere.",
                ) from exc
        if self.data_dir.exists() and not os.access(self.data_dir, os.R_OK | os.W_OK | os.X_OK):
            raise K2Error(
                f"the broker data directory {self.data_dir} is not readable and writable",
                f"fix its permissions (e.g. `chown -R $USER {self.data_dir}`).",
            )

    def _write_config(self) -> None:
        s = self.settings
        host = s.kafka.host
        voters = ",".join(f"{n}@{host}:{c}" for n, (_, c) in enumerate(s.kafka.node_ports(), start=1))
        copies = min(3, s.kafka.nodes)  # of the internal topics (consumer offsets, transactions)
        props = {
            "process.roles": "broker,controller",
            "node.id": self.node,
            "controller.quorum.voters": voters,
            "listeners": f"PLAINTEXT://{host}:{self.port},CONTROLLER://{host}:{self.controller_port}",
            "advertised.listeners": f"PLAINTEXT://{host}:{self.port}",
            "controller.listener.names": "CONTROLLER",
            "inter.broker.listener.name": "PLAINTEXT",
            "listener.security.protocol.map": "CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT",
            "log.dirs": self.data_dir,
            # topics are created explicitly from K2's settings, so a typo never makes a new topic
            "auto.create.topics.enable": "false",
            "num.partitions": s.topics.partitions,
            "offsets.topic.replication.factor": copies,
            "offsets.topic.num.partitions": 5,
            "transaction.state.log.replication.factor": copies,
            "transaction.state.log.min.isr": min_insync_replicas(copies),
            "share.coordinator.state.topic.replication.factor": copies,
            "share.coordinator.state.topic.min.isr": min_insync_replicas(copies),
            "min.insync.replicas": min_insync_replicas(copies),
            "group.initial.rebalance.delay.ms": 0,
        }
        self.config_file.write_text("".join(f"{k}={v}\n" for k, v in props.items()))
        self.log4j_file.write_text(_LOG4J2.format(log_dir=self.log_dir))

    def _format(self, java: str, jars: list[Path], cluster_id: str) -> None:
        if self.data_dir.exists() and any(self.data_dir.iterdir()):
            raise K2Error(
                f"{self.data_dir} holds files but no meta.properties: an interrupted format or "
                "a directory that is not a Kafka data directory",
                f"move it aside, or delete it with `k2 kafka reset --yes` (which removes {self.data_dir}).",
            )
        cmd = [
            java,
            f"-Dlog4j2.configurationFile={self.log4j_file}",
            f"-Dkafka.logs.dir={self.log_dir}",
            "-cp",
            os.pathsep.join(str(j) for j in jars),
            "kafka.tools.StorageTool",
            "format",
            f"--cluster-id={cluster_id}",
            f"--config={self.config_file}",
        ]  # ids may start with "-"
        result = subprocess.run(cmd, capture_output=True, text=True, check=False)
        if result.returncode != 0:
            raise K2Error(
                f"formatting the broker storage in {self.data_dir} failed:\n"
                f"{(result.stderr or result.stdout).strip()[-2000:]}",
                "fix the cause above; `k2 kafka reset --yes` removes a half-formatted directory.",
            )
        log.info("broker.formatted", data_dir=str(self.data_dir), cluster_id=cluster_id)

    def _check_formatted(self) -> None:
        meta = self.data_dir / "meta.properties"
        try:
            text = meta.read_text()
        except OSError as exc:
            raise K2Error(
                f"cannot read {meta}: {exc.strerror}",
                "fix its permissions; `k2 kafka reset --yes` starts over with empty storage.",
            ) from exc
        entries = dict(line.split("=", 1) for line in text.splitlines() if "=" in line)
        if entries.get("node.id") != str(self.node) or "cluster.id" not in entries:
            raise K2Error(
                f"{meta} does not describe K2's node {self.node}: {entries}",
                "point K2_HOME at K2's own state, or `k2 kafka reset --yes` to start over.",
            )

    def wait_ready(self, proc: subprocess.Popen) -> None:
        deadline = time.monotonic() + self.settings.kafka.start_timeout_s
        next_note = time.monotonic() + 10
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                self.pid_file.unlink(missing_ok=True)
                raise K2Error(
                    f"the Kafka broker exited with code {proc.returncode} during start-up:\n{self._log_tail()}",
                    f"see {self.log_dir / 'server.log'}; fix the cause and start again.",
                )
            if broker_reachable(self.bootstrap, timeout=1.0):
                log.info("broker.ready", node=self.node, pid=proc.pid, bootstrap=self.bootstrap)
                return
            if time.monotonic() > next_note:
                log.info("broker.waiting", pid=proc.pid, log=str(self.log_dir / "server.log"))
                next_note = time.monotonic() + 10
            time.sleep(0.2)
        self._terminate(proc.pid)
        raise K2Error(
            f"the Kafka broker did not accept clients within {self.settings.kafka.start_timeout_s}s"
            f"; it was stopped. Last log lines:\n{self._log_tail()}",
            "raise K2_KAFKA_START_TIMEOUT_S on a slow machine, or see the broker log.",
        )

    def _log_tail(self) -> str:
        return log_tail(self.log_dir / "server.log", self.log_dir / "stdout.log")

    # --- stop ------------------------------------------------------------------------------------
    def stop(self) -> bool:
        """Stop the broker: SIGTERM, then SIGKILL after the grace period. False if none ran."""
        pid = self._live_pid()
        if pid is None:
            self.pid_file.unlink(missing_ok=True)
            return False
        self._terminate(pid)
        self.pid_file.unlink(missing_ok=True)
        return True

    def _terminate(self, pid: int) -> None:
        log.info("broker.stopping", pid=pid)
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGTERM)
        if _wait_gone(pid, self.settings.kafka.stop_timeout_s):
            log.info("broker.stopped", pid=pid)
            return
        log.warning("broker.kill", pid=pid, reason=f"still alive {self.settings.kafka.stop_timeout_s}s after SIGTERM")
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
        _wait_gone(pid, 10)


class LocalKafka:
    """All nodes of the embedded Kafka as one, for `k2 up`, `k2 down` and `k2 kafka start`."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.nodes = [LocalKafkaBroker(settings, n) for n in range(1, settings.kafka.nodes + 1)]

    def status(self) -> BrokerStatus:
        """Running when every node runs; the first node's pid and the cluster's bootstrap servers."""
        each = [node.status() for node in self.nodes]
        first = each[0]
        return BrokerStatus(
            all(s.running for s in each),
            first.pid,
            self.settings.kafka.bootstrap_servers,
            first.data_dir,
            first.log_file,
        )

    def data_dir_locked(self) -> bool:
        return any(node.data_dir_locked() for node in self.nodes)

    def start(self) -> BrokerStatus:
        """Launch every node, then wait for each: a cluster's nodes answer only once a majority of
        its controllers runs, so none is waited for before all are started."""
        cluster_id = self._cluster_id() if len(self.nodes) > 1 else None
        started = []
        try:
            for node in self.nodes:
                if not node.status().running:
                    started.append((node, node.launch(cluster_id)))
            for node, proc in started:
                node.wait_ready(proc)
        except BaseException:
            for node, _ in started:
                node.stop()
            raise
        return self.status()

    def ensure_running(self) -> BrokerStatus:
        status = self.status()
        return status if status.running else self.start()

    def stop(self) -> bool:
        """Stop every node, all at once; False when none ran. In turn, the last node of a cluster
        lost its controller quorum and waited out the grace period (3 nodes: 31 s, at once: 6 s)."""
        return any(concurrently([node.stop for node in self.nodes]))

    def _cluster_id(self) -> str:
        path = self.settings.kafka_dir / "cluster.id"
        if not path.exists():
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(new_cluster_id())
        return path.read_text().strip()


def new_cluster_id() -> str:
    """A KRaft cluster id: a random UUID in URL-safe base64 (it may start with "-")."""
    return base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")


def _is_broker_process(pid: int, config_file: Path) -> bool:
    try:
        proc = psutil.Process(pid)
        if proc.status() == psutil.STATUS_ZOMBIE:
            return False
        cmdline = proc.cmdline()
    except (psutil.NoSuchProcess, psutil.AccessDenied):
        return False
    return "kafka.Kafka" in cmdline and str(config_file) in cmdline


def _wait_gone(pid: int, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            proc = psutil.Process(pid)
            if proc.status() == psutil.STATUS_ZOMBIE:
                with contextlib.suppress(ChildProcessError):
                    os.waitpid(pid, 0)  # reap our own child so the pid goes away
                return True
        except psutil.NoSuchProcess:
            return True
        time.sleep(0.1)
    return False


_LOG4J2 = """\
# Written by K2 at each broker start.
status = warn
appender.file.type = RollingFile
appender.file.name = file
appender.file.fileName = {log_dir}/server.log
appender.file.filePattern = {log_dir}/server.log.%i
appender.file.layout.type = PatternLayout
appender.file.layout.pattern = [%d{{ISO8601}}] %p %m (%c)%n
appender.file.policies.type = Policies
appender.file.policies.size.type = SizeBasedTriggeringPolicy
appender.file.policies.size.size = 50MB
appender.file.strategy.type = DefaultRolloverStrategy
appender.file.strategy.max = 5
rootLogger.level = INFO
rootLogger.appenderRef.file.ref = file
logger.kafka.name = kafka
logger.kafka.level = INFO
logger.state.name = state.change.logger
logger.state.level = WARN
"""


def reset_storage(settings: Settings) -> list[Path]:
    """Delete every node's data directory (``k2 kafka reset``). Refuses while a node runs."""
    kafka = LocalKafka(settings)
    for node in kafka.nodes:
        if node.status().running or node.data_dir_locked():
            raise K2Error(f"a broker is running on {node.data_dir}", "stop it first with `k2 kafka stop`.")
    for node in kafka.nodes:
        if node.data_dir.exists():
            shutil.rmtree(node.data_dir)
        log.warning("broker.storage_deleted", data_dir=str(node.data_dir))
    (settings.kafka_dir / "cluster.id").unlink(missing_ok=True)
    return [node.data_dir for node in kafka.nodes]
