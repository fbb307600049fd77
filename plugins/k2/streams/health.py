"""The supervisor's rules, as a pure function of what it observed: no I/O, unit-tested directly."""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import Enum

HOUR_S = 3600.0


class Action(Enum):
    NONE = "none"  # healthy, starting, stopped on request, or given up already
    START = "start"  # launch the job (first start or restart)
    WAIT = "wait"  # down, but inside its back-off delay
    KILL = "kill"  # alive but stalled: kill it (a later check restarts it)
    GIVE_UP = "give_up"  # too many restarts, or a failure a restart cannot fix: alert, stop trying


@dataclass(frozen=True)
class Policy:
    stall_timeout_s: float
    start_timeout_s: float
    backoff_base_s: float
    backoff_max_s: float
    max_restarts_per_hour: int


@dataclass(frozen=True)
class Observation:
    now: float
    running_pid: int | None  # holder of the instance lock: the job is up
    launcher_alive: bool  # the submitted process group still exists (e.g. JVM still booting)
    job_state: str | None  # status.json "state"
    failure_reason: str | None  # status.json "reason" of the last failure
    last_active_at: float | None  # newest completed micro-batch or "no new data" report
    lag: int | None  # Kafka end offsets minus the stream's committed offsets (None: unknown)
    stop_requested: bool
    exchange: str = ""  # named in the commands a decision tells the operator to run
    last_seen_at: float | None = None  # the job's last heartbeat or status write: last known alive


@dataclass
class SupervisorState:
    """What the supervisor remembers between checks (the control store's ``supervisor`` document)."""

    launched_at: float | None = None
    launcher_pgid: int | None = None
    launcher_host: str | None = None  # process groups are signalled only there
    restarts: list[float] = field(default_factory=list)  # restart times, pruned to the last hour
    consecutive_failures: int = 0
    down_since: float | None = None
    gave_up_at: float | None = None
    gave_up_reason: str | None = None
    alerted: bool = False
    outage: str | None = None  # a dependency the stream is waiting for (alerted once, cleared on recovery)


@dataclass(frozen=True)
class Decision:
    action: Action
    reason: str
    retry_at: float | None = None


# Exits because something the stream depends on is away, not because of the stream: they are waited
# out with back-off and never count toward giving up (an outage of any length ends in a restart).
DEPENDENCY_OUTAGES = {
    "kafka_unreachable": "Kafka is unreachable",
    "catalog_unreachable": "the Iceberg catalog is unreachable",
    # a standby: the instance on the other host ends, and this one takes over
    "running_elsewhere": "another host runs the stream (it holds the stream's fence in the catalog's database)",
}

UNFIXABLE_BY_RESTART = {
    "checkpoint_corrupt": "the checkpoint is corrupt (see the stream status for the path and recovery choices)"
}


def backoff_s(policy: Policy, consecutive_failures: int) -> float:
    if consecutive_failures <= 0:
        return 0.0
    return min(policy.backoff_max_s, policy.backoff_base_s * 2 ** (consecutive_failures - 1))


def decide(obs: Observation, state: SupervisorState, policy: Policy) -> Decision:
    if obs.running_pid is not None:
        return _judge_running(obs, state, policy)
    if obs.stop_requested:
        return Decision(Action.NONE, f"stopped on request (`k2 stream start --exchange {obs.exchange}` resumes it)")
    if state.gave_up_at is not None:
        return Decision(Action.NONE, f"given up: {state.gave_up_reason}")
    if obs.launcher_alive and state.launched_at is not None:
        age = obs.now - state.launched_at
        if age < policy.start_timeout_s:
            return Decision(Action.NONE, "starting")
        return Decision(Action.KILL, f"launched {age:.0f}s ago and still not running: hung start-up")
    if obs.failure_reason in UNFIXABLE_BY_RESTART and state.launched_at is not None:
        return Decision(Action.GIVE_UP, UNFIXABLE_BY_RESTART[obs.failure_reason])
    if state.launched_at is None:
        return Decision(Action.START, "not running: first start")
    recent = [t for t in state.restarts if obs.now - t < HOUR_S]
    outage = DEPENDENCY_OUTAGES.get(obs.failure_reason or "")
    if len(recent) >= policy.max_restarts_per_hour and outage is None:
        return Decision(
            Action.GIVE_UP, f"{len(recent)} restarts within the last hour (limit {policy.max_restarts_per_hour})"
        )
    retry_at = went_down_at(obs, state) + backoff_s(policy, state.consecutive_failures + 1)
    if obs.now < retry_at:
        why = f"waiting out an outage: {outage}" if outage else "down"
        return Decision(Action.WAIT, f"{why}, restart in {retry_at - obs.now:.1f}s (back-off)", retry_at)
    if outage:
        return Decision(Action.START, f"{outage}: try again (outages do not count as restarts)")
    what = obs.failure_reason or obs.job_state or "process gone"
    return Decision(Action.START, f"not running ({what}): restart")


def went_down_at(obs: Observation, state: SupervisorState) -> float:
    """When the stream went down, which its back-off counts from: as a check recorded it, else its
    last sign of life since its launch (a kill -9 or a crash ends its heartbeats), else now. Counting
    from the first check that saw it down made a 2 s back-off cost a whole check interval (30 s)."""
    if state.down_since is not None:
        return state.down_since
    seen = obs.last_seen_at
    if seen is not None and state.launched_at is not None and state.launched_at <= seen <= obs.now:
        return seen
    return obs.now


def _judge_running(obs: Observation, state: SupervisorState, policy: Policy) -> Decision:
    if obs.stop_requested:
        return Decision(Action.NONE, "stopping on request")
    behind = obs.lag is not None and obs.lag > 0
    if obs.last_active_at is None or (state.launched_at and obs.last_active_at < state.launched_at):
        since = state.launched_at or obs.now
        if behind and obs.now - since > policy.start_timeout_s:
            return Decision(
                Action.KILL,
                f"no batch completed {obs.now - since:.0f}s after start while {obs.lag} records wait in Kafka",
            )
        return Decision(Action.NONE, "running, first batch pending")
    silent = obs.now - obs.last_active_at
    if behind and silent > policy.stall_timeout_s:
        return Decision(Action.KILL, f"stalled: no batch for {silent:.0f}s while {obs.lag} records wait in Kafka")
    return Decision(Action.NONE, "running")
