"""Keeps exactly one Bronze stream per exchange running: observe, decide (k2.streams.health), act.

A check (``reconcile``) is one short step that a fresh process can take: all it remembers between
checks is the ``supervisor`` document (k2.streams.control: a file, or a row in the catalog's
PostgreSQL database that checks on every host share), and the stream it launches is detached. The
supervisor DAGs run one check per run; any number of checkers may overlap (a DAG run, ``k2 stream
check``): the control store's exclusive lock serialises them, and the job's own instance lock (and
fence) makes a second copy of the job exit at once. Processes are signalled only on the host that
launched them: a check elsewhere sees the stream through the shared documents, and ends a stalled one
through the standalone Spark master its driver uses (k2.runtime.spark_master).
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any

from k2.log import get_logger
from k2.runtime.procs import group_alive
from k2.runtime.spark_master import SparkMaster
from k2.settings import Settings
from k2.streams.control import CHECKER, renew_lease, stream_control
from k2.streams.health import (
    DEPENDENCY_OUTAGES,
    Action,
    Decision,
    Observation,
    Policy,
    SupervisorState,
    decide,
    went_down_at,
)
from k2.streams.state import InstanceLock, StreamPaths

log = get_logger(__name__)


def last_beat(status: dict) -> float | None:
    """The job's last sign of life: its watch loop's heartbeat or its last status write."""
    return max((status[k] for k in ("heartbeat_at", "updated_at") if status.get(k)), default=None)


# a running job rewrites its status every k2.streams.job.WATCH_EVERY_S: older than this, it is not beating
HEARTBEAT_MAX_AGE_S = 30.0

AlertCallback = Callable[[str, str, str], None]  # (severity, exchange, message)


@dataclass(frozen=True)
class StreamReport:
    """One check's outcome: what the UI, the task log and ``k2 status`` show."""

    exchange: str
    action: str
    reason: str
    state: str  # running / starting / down / stopped / given_up
    pid: int | None
    batch_id: int | None
    last_batch_age_s: float | None
    lag: int | None
    input_rows_per_s: float | None
    restarts_last_hour: int

    def line(self) -> str:
        age = "-" if self.last_batch_age_s is None else f"{self.last_batch_age_s:.1f}s"
        rate = "-" if self.input_rows_per_s is None else f"{self.input_rows_per_s:.0f}"
        return (
            f"stream={self.exchange} state={self.state} pid={self.pid or '-'} batch={self.batch_id} "
            f"last_batch_age={age} lag={self.lag if self.lag is not None else '-'} rows_per_s={rate} "
            f"restarts_1h={self.restarts_last_hour} action={self.action} reason={self.reason!r}"
        )


def _log_alert(severity: str, exchange: str, message: str) -> None:
    log.critical("stream.alert", severity=severity, exchange=exchange, message=message)


class StreamSupervisor:
    def __init__(
        self,
        settings: Settings,
        exchange: str,
        *,
        alert: AlertCallback = _log_alert,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.settings = settings
        self.exchange = exchange
        self.paths = StreamPaths.of(settings, exchange).ensure()
        self.policy = Policy(
            settings.streams.stall_timeout_s,
            settings.streams.start_timeout_s,
            settings.streams.backoff_base_s,
            settings.streams.backoff_max_s,
            settings.streams.max_restarts_per_hour,
        )
        self.alert = alert
        self.clock = clock
        self.instance = InstanceLock(self.paths.lock)
        self.control = stream_control(settings, exchange)
        self.host = socket.gethostname()
        self._children: list[subprocess.Popen] = []
        self._consumer: Any = None

    # --- state -----------------------------------------------------------------------------------
    def query_running(self, status: dict | None = None) -> bool:
        """The job's own word: its streaming query started and its watch loop still beats (every
        k2.streams.job.WATCH_EVERY_S), whether or not the topic has anything new."""
        if status is None:
            status = self.control.read("status") or {}
        beat = last_beat(status)
        return status.get("state") == "running" and beat is not None and self.clock() - beat < HEARTBEAT_MAX_AGE_S

    def first_trigger_done(self) -> bool:
        """The job's query runs and finished its first trigger since the job started: it completed a
        batch (on a new topic an empty one, which pays the JVM's cold start) or found nothing new."""
        status = self.control.read("status") or {}
        started = status.get("started_at") or 0
        progress, idle = self.control.read("progress") or {}, self.control.read("idle") or {}
        finished = (progress.get("completed_at"), idle.get("idle_at"))
        return self.query_running(status) and any(t and t >= started for t in finished)

    def running_pid(self, status: dict) -> int | None:
        """The job's pid: this host's instance lock holder, else a job on another host whose status
        still beats (it holds the fence there; its own host's checks signal it)."""
        local = self.instance.holder_pid()
        if local is not None:
            return local
        elsewhere = status.get("host") not in (None, self.host)
        return status.get("pid") if elsewhere and self.query_running(status) else None

    def load_state(self) -> SupervisorState:
        data = self.control.read("supervisor") or {}
        known = SupervisorState.__dataclass_fields__
        return SupervisorState(**{k: v for k, v in data.items() if k in known})

    def save_state(self, state: SupervisorState) -> None:
        self.control.write("supervisor", asdict(state))

    # --- observing -------------------------------------------------------------------------------
    def observe(self, state: SupervisorState, known_lag: int | None = None) -> Observation:
        """``known_lag``: records waiting in Kafka, when the caller has just asked Kafka itself."""
        self._reap()
        status = self.control.read("status") or {}
        progress = self.control.read("progress") or {}
        idle = self.control.read("idle") or {}
        active = [t for t in (progress.get("completed_at"), idle.get("idle_at")) if t]
        return Observation(
            now=self.clock(),
            running_pid=self.running_pid(status),
            launcher_alive=self._launcher_alive(state, status),
            job_state=status.get("state"),
            failure_reason=status.get("reason") if status.get("state") == "failed" else None,
            last_active_at=max(active) if active else None,
            lag=self._lag(progress) if known_lag is None else known_lag,
            stop_requested=self.control.read("stop") is not None,
            exchange=self.exchange,
            last_seen_at=last_beat(status),
        )

    def _lag(self, progress: dict) -> int | None:
        """Records in Kafka the stream has not committed yet; None when Kafka cannot be asked."""
        from k2.kafka.lag import committed_offsets, measure_lag, offsets_consumer

        topic = self.settings.topic_for(self.exchange)
        if self._consumer is None:
            self._consumer = offsets_consumer(self.settings.kafka, f"k2-supervisor-{self.exchange}")
        lag = measure_lag(self._consumer, topic, committed_offsets(progress, topic), with_age=False)
        return None if lag is None else lag.records

    # --- acting ----------------------------------------------------------------------------------
    def reconcile(self) -> StreamReport:
        """One supervision step. Serialised with other supervisors of the same stream."""
        with self.control.exclusive(CHECKER, wait=False) as acquired:
            if not acquired:
                return self._report(None, Decision(Action.NONE, "another supervisor is checking"), self.load_state())
            state = self.load_state()
            renew_lease(self.control, self.settings.streams.lease_ttl_s, holder=f"supervisor:{self.host}:{os.getpid()}")
            obs = self.observe(state)
            decision = decide(obs, state, self.policy)
            self._apply(decision, obs, state)
            self.save_state(state)
            return self._report(obs, decision, state)

    def inspect(self, known_lag: int | None = None) -> StreamReport:
        """What a check would see and decide, without acting (and without renewing the lease)."""
        state = self.load_state()
        obs = self.observe(state, known_lag)
        return self._report(obs, decide(obs, state, self.policy), state, acted=False)

    def _apply(self, decision: Decision, obs: Observation, state: SupervisorState) -> None:
        now = obs.now
        state.restarts = [t for t in state.restarts if now - t < 3600]
        if (
            decision.action is Action.NONE
            and obs.running_pid is not None
            and obs.last_active_at
            and state.launched_at
            and obs.last_active_at > state.launched_at
        ):
            state.consecutive_failures = 0  # it made progress since its launch: healthy again
            state.down_since = None
            if state.outage is not None:
                self.alert("warning", self.exchange, f"Bronze stream {self.exchange} runs again after: {state.outage}")
                state.outage = None
        elif decision.action is Action.WAIT and state.down_since is None:
            state.down_since = went_down_at(obs, state)
            log.warning("stream.down", exchange=self.exchange, reason=decision.reason)
        elif decision.action is Action.START:
            if state.launched_at is not None:
                if obs.failure_reason not in DEPENDENCY_OUTAGES:
                    state.restarts.append(now)
                state.consecutive_failures += 1
            state.down_since = None
            state.launched_at = now
            state.launcher_pgid, state.launcher_host = self.launch(), self.host
        elif decision.action is Action.KILL:
            if self._here(state):
                log.warning("stream.killing", exchange=self.exchange, reason=decision.reason, pid=obs.running_pid)
                self.kill(state, grace_s=5.0)
            else:
                self.kill_elsewhere(state, decision.reason)
            state.down_since = now
        elif decision.action is Action.GIVE_UP:
            state.gave_up_at, state.gave_up_reason = now, decision.reason
            if not state.alerted:
                self.alert(
                    "critical",
                    self.exchange,
                    f"Bronze stream {self.exchange}: supervisor gave up: "
                    f"{decision.reason}. Fix the cause, then `k2 stream start --exchange {self.exchange}`.",
                )
                state.alerted = True
        outage = DEPENDENCY_OUTAGES.get(obs.failure_reason or "")
        if decision.action in (Action.WAIT, Action.START) and outage is not None and state.outage is None:
            state.outage = outage
            self.alert(
                "warning",
                self.exchange,
                f"Bronze stream {self.exchange} is waiting: {outage}. The supervisor tries again with back-off "
                "until it starts; nothing is lost (the stream resumes from its checkpoint).",
            )

    def launch(self) -> int:
        """Start the job's launcher (spark-submit), detached from this process. Returns its pgid."""
        self.paths.log_file.parent.mkdir(parents=True, exist_ok=True)
        # Inside an Airflow task the metadata DB URL is replaced by a sentinel that makes importing
        # Airflow fail; the launcher needs no DB, so it gets the plain configuration back.
        env = {
            k: v
            for k, v in os.environ.items()
            if k not in ("AIRFLOW__DATABASE__SQL_ALCHEMY_CONN", "AIRFLOW__CORE__SQL_ALCHEMY_CONN")
        }
        with self.paths.log_file.open("ab") as out:
            proc = subprocess.Popen(
                [sys.executable, "-m", "k2.streams.launcher", "--exchange", self.exchange],
                stdout=out,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
                env=env,
            )
        self._children.append(proc)
        log.info("stream.launched", exchange=self.exchange, pgid=proc.pid, log=str(self.paths.log_file))
        return proc.pid

    def kill(self, state: SupervisorState, grace_s: float = 10.0) -> None:
        """SIGTERM the job's process group, SIGKILL what is left after ``grace_s``."""
        pgid = state.launcher_pgid
        if pgid is None or not self._here(state):  # another host's process group: its own checks see to it
            return
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(pgid, signal.SIGTERM)
        deadline = time.monotonic() + grace_s
        while time.monotonic() < deadline and group_alive(pgid):
            self._reap()
            time.sleep(0.2)
        if group_alive(pgid):
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(pgid, signal.SIGKILL)
        self._reap()

    def kill_elsewhere(self, state: SupervisorState, reason: str) -> bool:
        """End a stream whose driver runs on another host: through the standalone Spark master, which
        removes its application (the driver's process exits there). Without a master (local mode on
        that host), or when it does not answer, it is left to that host's own checks. True once the
        master no longer runs the application."""
        app_id = (self.control.read("status") or {}).get("spark_app_id")
        master = SparkMaster.of(self.settings)
        where = {"exchange": self.exchange, "host": state.launcher_host, "reason": reason}
        if master is None or not app_id:
            log.warning("stream.kill_left_to_its_host", **where, why="its driver is out of this host's reach")
            return False
        log.warning("stream.killing_through_master", **where, app_id=app_id, master=master.ui_url)
        try:
            return master.kill_application(app_id)
        except (OSError, ValueError) as exc:
            log.warning("stream.master_unreachable", **where, master=master.ui_url, error=str(exc)[:300])
            return False

    def request_stop(self, timeout_s: float = 60.0) -> bool:
        """Ask the job to stop cleanly (it finishes its batch); True once this host's instance is
        down. The request is a shared document, so an instance on another host stops too (within
        its next watch). When the store cannot take it (its database is down), the instance here is
        sent SIGTERM instead, which it handles the same way."""
        try:
            self.control.write("stop", {"requested_at": time.time(), "by": f"{self.host}:{os.getpid()}"})
        except Exception as exc:
            log.warning("stream.stop_not_recorded", exchange=self.exchange, error=f"{type(exc).__name__}: {exc}"[:300])
            pid = self.instance.holder_pid()
            if pid is not None:
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            self._reap()
            if self.instance.holder_pid() is None:
                return True
            time.sleep(0.2)
        try:  # it did not stop in time: the process group its launcher started
            self.kill(self.load_state())
        except Exception:  # the store is out of reach: the job's own process, at least
            pid = self.instance.holder_pid()
            if pid is not None:
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.kill(pid, signal.SIGKILL)
                wait_for_exit = time.monotonic() + 10
                while time.monotonic() < wait_for_exit and self.instance.holder_pid() is not None:
                    time.sleep(0.2)
        return self.instance.holder_pid() is None

    def clear_stop(self) -> None:
        """Allow the stream to run again: drop a stop request and a previous give-up."""
        self.control.delete("stop")
        state = self.load_state()
        state.gave_up_at = state.gave_up_reason = None
        state.alerted, state.restarts, state.consecutive_failures = False, [], 0
        # an explicit start is a first start: launch now, not after a restart back-off
        state.launched_at = state.down_since = None
        self.save_state(state)

    def supervise(
        self,
        window_s: float,
        on_report: Callable[[StreamReport], None] | None = None,
        should_continue: Callable[[], bool] = lambda: True,
    ) -> list[StreamReport]:
        """Check every ``K2_STREAM_CHECK_INTERVAL_S`` for ``window_s`` seconds, in this process:
        supervision without Airflow's scheduler."""
        reports = []
        deadline = time.monotonic() + window_s
        while should_continue():
            report = self.reconcile()
            reports.append(report)
            if on_report is not None:
                on_report(report)
            if time.monotonic() >= deadline:
                break
            time.sleep(min(self.settings.streams.check_interval_s, max(0.0, deadline - time.monotonic())))
        return reports

    def close(self) -> None:
        if self._consumer is not None:
            self._consumer.close()
            self._consumer = None
        self.control.close()

    # --- helpers ---------------------------------------------------------------------------------
    def _reap(self) -> None:
        self._children = [p for p in self._children if p.poll() is None]

    def _launcher_alive(self, state: SupervisorState, status: dict) -> bool:
        """Whether the last launch may still be starting: here, its process group lives; on another
        host, the job it launched has not ended and the start-up time has not run out (until then a
        check here would start a second copy, which the fence would only turn into a standby)."""
        if self._here(state):
            return group_alive(state.launcher_pgid)
        if state.launched_at is None:
            return False
        if status.get("started_at", 0) >= state.launched_at and status.get("state") not in ("starting", "running"):
            return False  # that job has ended
        return self.clock() - state.launched_at < self.policy.start_timeout_s

    def _here(self, state: SupervisorState) -> bool:
        """Whether the launcher recorded in ``state`` ran on this host (older states: assumed so)."""
        return state.launcher_host in (None, self.host)

    def _report(
        self, obs: Observation | None, decision: Decision, state: SupervisorState, *, acted: bool = True
    ) -> StreamReport:
        progress = self.control.read("progress") or {}
        now = self.clock()
        if state.gave_up_at is not None:
            shown = "given_up"
        elif obs is not None and obs.running_pid is not None:
            shown = "running"
        elif obs is not None and obs.stop_requested:
            shown = "stopped"
        elif decision.reason == "starting" or (acted and decision.action is Action.START):
            shown = "starting"
        else:
            shown = "down"
        completed = progress.get("completed_at")
        return StreamReport(
            exchange=self.exchange,
            action=decision.action.value,
            reason=decision.reason,
            state=shown,
            pid=obs.running_pid if obs else None,
            batch_id=progress.get("batch_id"),
            last_batch_age_s=round(now - completed, 1) if completed else None,
            lag=obs.lag if obs else None,
            input_rows_per_s=progress.get("input_rows_per_s"),
            restarts_last_hour=len([t for t in state.restarts if now - t < 3600]),
        )
