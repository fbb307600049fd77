"""K2's embedded Spark standalone cluster: a master and K2_SPARK_WORKERS workers, each a process of
its own started from pyspark's own jars (``spark-class``), all on 127.0.0.1. It is the scale-out form
of Spark on one machine: the streams and the batch run as cluster applications with their share of
the slots (spark.cores.max), and a worker's death costs its executors, not the applications.

Each process runs in a session of its own, so its executors (children of the worker) share its fate:
killing a worker's process group is what losing that host does to a cluster.
"""

from __future__ import annotations

import contextlib
import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import psutil

from k2.errors import K2Error
from k2.log import get_logger
from k2.runtime import procs
from k2.runtime.spark_master import ClusterState, SparkMaster
from k2.settings import Settings

log = get_logger(__name__)

HOST = "127.0.0.1"
MASTER_CLASS = "org.apache.spark.deploy.master.Master"
WORKER_CLASS = "org.apache.spark.deploy.worker.Worker"


@dataclass(frozen=True)
class NodeStatus:
    name: str
    running: bool
    pid: int | None
    log_file: Path


class LocalSparkCluster:
    """Start, stop and inspect the embedded standalone cluster of ``settings``' state directory."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.spark = settings.spark
        self.dir = settings.home / "spark-cluster"
        self.url = f"spark://{HOST}:{self.spark.master_port}"
        self.master = SparkMaster(f"http://{HOST}:{self.spark.master_ui_port}")

    # --- lifecycle ---------------------------------------------------------------------------------
    def ensure_running(self, timeout_s: float = 120.0) -> ClusterState:
        """Every node running and registered with the master; started first where needed."""
        if not self._node_running("master"):
            procs.require_free_port(HOST, self.spark.master_port, "K2_SPARK_MASTER_PORT")
            procs.require_free_port(HOST, self.spark.master_ui_port, "K2_SPARK_MASTER_UI_PORT")
            self._spawn("master", MASTER_CLASS, "--host", HOST, "--port", str(self.spark.master_port),
                        "--webui-port", str(self.spark.master_ui_port))  # fmt: skip
        for n in range(1, self.spark.workers + 1):
            name = f"worker-{n}"
            if not self._node_running(name):
                work_dir = self.dir / name
                self._spawn(name, WORKER_CLASS, self.url, "--host", HOST, "--webui-port", "0",
                            "--cores", str(self.spark.worker_cores), "--memory", self.spark.worker_memory,
                            "--work-dir", str(work_dir))  # fmt: skip
        return self.wait_workers(self.spark.workers, timeout_s)

    def wait_workers(self, count: int, timeout_s: float) -> ClusterState:
        deadline = time.monotonic() + timeout_s
        state = None
        while time.monotonic() < deadline:
            if procs.running_pid(self._pid_file("master")) is None:  # (mid-exec, its command line may read empty)
                raise K2Error(
                    f"the Spark master exited while starting (see {self._log('master')})",
                    "fix the cause in that log (a port in use: K2_SPARK_MASTER_PORT, K2_SPARK_MASTER_UI_PORT), "
                    "then run `k2 up` again.",
                )
            with contextlib.suppress(OSError, ValueError):
                state = self.state()
                if state.alive_workers >= count:
                    log.info("spark_cluster.ready", master=self.url, workers=state.alive_workers, cores=state.cores)
                    return state
            time.sleep(1)
        raise K2Error(
            f"the Spark cluster has {state.alive_workers if state else 0} of {count} workers after {timeout_s:.0f}s",
            f"see the logs in {self.settings.logs_dir / 'spark-cluster'}.",
        )

    def stop(self) -> list[str]:
        """Workers first (their executors with them), then the master; the names that were running."""
        stopped = []
        for name in [*self._worker_names(), "master"]:
            if procs.stop(self._pid_file(name)):
                stopped.append(name)
        return stopped

    def kill_worker(self, n: int) -> None:
        """SIGKILL worker ``n`` and its executors, as the loss of its host would (tests, drills)."""
        pid = procs.running_pid(self._pid_file(f"worker-{n}"))
        if pid is None:
            raise K2Error(f"worker-{n} of the Spark cluster is not running", "start the cluster with `k2 up`.")
        os.killpg(pid, 9)

    # --- inspection --------------------------------------------------------------------------------
    def nodes(self) -> list[NodeStatus]:
        return [
            NodeStatus(name, pid is not None, pid, self._log(name))
            for name in ["master", *self._worker_names()]
            for pid in [self._live_pid(name)]
        ]

    def state(self) -> ClusterState:
        return self.master.state()

    def executor_worker(self, app_name: str) -> int | None:
        """The number of the worker running an executor of the application named ``app_name``."""
        app_ids = {i for i, name in self.state().applications.items() if name == app_name}
        for n in range(1, self.spark.workers + 1):
            pid = self._live_pid(f"worker-{n}")
            if pid is None:
                continue
            for cmdline in _children_cmdlines(pid):
                if "--app-id" in cmdline and cmdline[cmdline.index("--app-id") + 1] in app_ids:
                    return n
        return None

    # --- internals ---------------------------------------------------------------------------------
    def _worker_names(self) -> list[str]:
        return [f"worker-{n}" for n in range(1, self.spark.workers + 1)]

    def _pid_file(self, name: str) -> Path:
        return self.settings.run_dir / f"spark-{name}.pid"

    def _log(self, name: str) -> Path:
        return self.settings.logs_dir / "spark-cluster" / f"{name}.log"

    def _node_running(self, name: str) -> bool:
        return self._live_pid(name) is not None

    def _live_pid(self, name: str) -> int | None:
        return procs.owned_pid(self._pid_file(name), MASTER_CLASS if name == "master" else WORKER_CLASS, str(self.dir))

    def _spawn(self, name: str, main_class: str, *args: str) -> None:
        bin_dir = Path(sys.executable).parent
        env = {
            **os.environ,
            "SPARK_LOCAL_IP": HOST,  # RPC, block manager and web UIs of the node and its executors
            "SPARK_LOG_DIR": str(self.settings.logs_dir / "spark-cluster"),
            "SPARK_WORKER_DIR": str(self.dir),
            "PYSPARK_PYTHON": sys.executable,
            "PATH": str(bin_dir) + os.pathsep + os.environ.get("PATH", ""),
        }
        # the properties file names the cluster directory on every node's command line: a pid is known as ours
        cmd = ["spark-class", main_class, *args, "--properties-file", str(self._conf_file())]
        pid = procs.spawn(cmd, pid_file=self._pid_file(name), log_file=self._log(name), env=env)
        log.info("spark_cluster.starting", node=name, pid=pid)

    def _conf_file(self) -> Path:
        """Properties shared by every node: the master's REST submission server stays off, and a
        dead worker is noticed within 15 s (Spark's default waits a minute)."""
        path = self.dir / "spark-defaults.conf"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("spark.master.rest.enabled false\nspark.worker.timeout 15\nspark.ui.reverseProxy false\n")
        return path


def _children_cmdlines(pid: int) -> list[list[str]]:
    """Command lines of a process's descendants; those that exit meanwhile are left out."""
    found = []
    with contextlib.suppress(psutil.Error):
        for child in psutil.Process(pid).children(recursive=True):
            with contextlib.suppress(psutil.Error):
                found.append(child.cmdline())
    return found
