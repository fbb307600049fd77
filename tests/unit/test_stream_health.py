from dataclasses import replace

import pytest

from k2.streams.health import Action, Observation, Policy, SupervisorState, backoff_s, decide

POLICY = Policy(stall_timeout_s=60, start_timeout_s=120, backoff_base_s=2, backoff_max_s=30, max_restarts_per_hour=3)
NOW = 10_000.0
DOWN = Observation(
    now=NOW,
    running_pid=None,
    launcher_alive=False,
    job_state=None,
    failure_reason=None,
    last_active_at=None,
    lag=0,
    stop_requested=False,
)
UP = replace(DOWN, running_pid=123, job_state="running", last_active_at=NOW - 1, lag=10)


def test_first_start() -> None:
    assert decide(DOWN, SupervisorState(), POLICY).action is Action.START


def test_restart_waits_out_an_exponential_backoff() -> None:
    state = SupervisorState(launched_at=NOW - 50, consecutive_failures=2, down_since=NOW - 3)
    decision = decide(DOWN, state, POLICY)
    assert decision.action is Action.WAIT and decision.retry_at == NOW - 3 + 8
    assert decide(replace(DOWN, now=NOW + 5.1), state, POLICY).action is Action.START
    assert [backoff_s(POLICY, n) for n in range(1, 7)] == [2, 4, 8, 16, 30, 30]


def test_the_backoff_counts_from_the_last_heartbeat_since_the_launch() -> None:
    # killed 20 s before the check that sees it down: its 2 s back-off is over, so restart now
    state = SupervisorState(launched_at=NOW - 300)
    assert decide(replace(DOWN, last_seen_at=NOW - 20), state, POLICY).action is Action.START
    # died 1 s ago: wait out the rest of the back-off
    assert decide(replace(DOWN, last_seen_at=NOW - 1), state, POLICY).retry_at == NOW + 1
    # a heartbeat from before the launch (the new launch never beat) or from a clock ahead says nothing
    for seen in (NOW - 400, NOW + 50):
        assert decide(replace(DOWN, last_seen_at=seen), state, POLICY).retry_at == NOW + 2
    # a check's own record of the moment comes first
    recorded = SupervisorState(launched_at=NOW - 300, down_since=NOW - 1)
    assert decide(replace(DOWN, last_seen_at=NOW - 20), recorded, POLICY).action is Action.WAIT


def test_gives_up_after_too_many_restarts_in_an_hour() -> None:
    state = SupervisorState(launched_at=NOW - 10, restarts=[NOW - 3000, NOW - 2000, NOW - 100])
    assert decide(DOWN, state, POLICY).action is Action.GIVE_UP
    old = SupervisorState(launched_at=NOW - 10, restarts=[NOW - 4000, NOW - 2000, NOW - 100])
    assert decide(DOWN, old, POLICY).action is not Action.GIVE_UP


def test_corrupt_checkpoint_is_not_restarted() -> None:
    state = SupervisorState(launched_at=NOW - 10)
    decision = decide(replace(DOWN, job_state="failed", failure_reason="checkpoint_corrupt"), state, POLICY)
    assert decision.action is Action.GIVE_UP and "checkpoint" in decision.reason


def test_a_booting_job_is_left_alone() -> None:
    state = SupervisorState(launched_at=NOW - 20, launcher_pgid=99)
    assert decide(replace(DOWN, launcher_alive=True), state, POLICY).reason == "starting"
    # ... but not forever
    late = SupervisorState(launched_at=NOW - 500, launcher_pgid=99)
    assert decide(replace(DOWN, launcher_alive=True), late, POLICY).action is Action.KILL


@pytest.mark.parametrize(
    ("last_active", "lag", "action"),
    [
        (NOW - 1, 10, Action.NONE),  # healthy
        (NOW - 61, 10, Action.KILL),  # silent with work waiting: stalled
        (NOW - 600, 0, Action.NONE),  # silent and nothing to read: idle, not stalled
        (NOW - 600, None, Action.NONE),  # Kafka unknown: do not guess
    ],
)
def test_stall_needs_silence_and_waiting_records(last_active: float, lag: int | None, action: Action) -> None:
    state = SupervisorState(launched_at=NOW - 1000)
    assert decide(replace(UP, last_active_at=last_active, lag=lag), state, POLICY).action is action


def test_no_first_batch_within_start_timeout_is_a_stall() -> None:
    state = SupervisorState(launched_at=NOW - 200)
    assert decide(replace(UP, last_active_at=NOW - 900), state, POLICY).action is Action.KILL
    young = SupervisorState(launched_at=NOW - 30)
    assert decide(replace(UP, last_active_at=None), young, POLICY).action is Action.NONE


def test_stop_request_is_respected() -> None:
    assert (
        decide(replace(DOWN, stop_requested=True), SupervisorState(launched_at=NOW - 5), POLICY).action is Action.NONE
    )
    assert decide(replace(UP, stop_requested=True), SupervisorState(), POLICY).action is Action.NONE
    stopped = decide(replace(DOWN, stop_requested=True, exchange="kraken"), SupervisorState(), POLICY)
    assert "`k2 stream start --exchange kraken`" in stopped.reason


def test_given_up_stays_given_up() -> None:
    state = SupervisorState(launched_at=NOW - 10, gave_up_at=NOW - 5, gave_up_reason="x")
    assert decide(DOWN, state, POLICY).action is Action.NONE


@pytest.mark.parametrize("reason", ["kafka_unreachable", "catalog_unreachable", "running_elsewhere"])
def test_dependency_outages_are_waited_out_and_never_give_up(reason: str) -> None:
    # as many restarts as the limit allows, then an outage: the supervisor keeps trying with back-off
    state = SupervisorState(launched_at=NOW - 10, restarts=[NOW - 300, NOW - 200, NOW - 100], consecutive_failures=6)
    down = replace(DOWN, job_state="failed", failure_reason=reason)
    state.down_since = NOW - 1
    waiting = decide(down, state, POLICY)
    assert waiting.action is Action.WAIT and "waiting out an outage" in waiting.reason
    retry = decide(replace(down, now=NOW + POLICY.backoff_max_s), state, POLICY)
    assert retry.action is Action.START and "do not count" in retry.reason
    # the same exit for any other reason is the stream's own failure: the limit applies
    assert decide(replace(down, failure_reason="error"), state, POLICY).action is Action.GIVE_UP


def test_an_outage_alerts_once_when_it_starts_and_once_when_the_stream_is_back(tmp_path, monkeypatch) -> None:
    from k2.settings import Settings
    from k2.streams.health import Decision
    from k2.streams.supervisor import StreamSupervisor

    alerts: list[tuple[str, str]] = []
    supervisor = StreamSupervisor(
        Settings.from_env({}, home=tmp_path), "binance", alert=lambda sev, _ex, msg: alerts.append((sev, msg))
    )
    monkeypatch.setattr(supervisor, "launch", lambda: 4242)
    state = SupervisorState(launched_at=NOW - 10)
    down = replace(DOWN, job_state="failed", failure_reason="kafka_unreachable")
    for step in range(3):  # two relaunches and a wait while Kafka is away
        action = Action.WAIT if step == 1 else Action.START
        supervisor._apply(Decision(action, "outage"), replace(down, now=NOW + step), state)
    assert state.restarts == [] and state.consecutive_failures == 2
    assert [sev for sev, _ in alerts] == ["warning"] and "Kafka is unreachable" in alerts[0][1]
    back = replace(UP, now=NOW + 60, last_active_at=NOW + 59)
    supervisor._apply(Decision(Action.NONE, "running"), back, state)
    assert len(alerts) == 2 and "runs again" in alerts[1][1] and state.outage is None


def test_a_stream_is_ready_for_data_once_its_first_trigger_since_its_start_is_done(tmp_path) -> None:
    """`k2 up` starts the feeds then: a new topic's first batch (empty, on a cold JVM) is behind it."""
    import time

    from k2.settings import Settings
    from k2.streams.supervisor import StreamSupervisor

    supervisor = StreamSupervisor(Settings.from_env({}, home=tmp_path), "binance")
    started = time.time()
    try:
        assert not supervisor.first_trigger_done()  # no job yet
        supervisor.control.write("status", {"state": "running", "started_at": started, "heartbeat_at": started})
        supervisor.control.write("progress", {"batch_id": 7, "completed_at": started - 60})  # the previous job's
        assert not supervisor.first_trigger_done()
        supervisor.control.write("idle", {"idle_at": started + 1})  # a restart with nothing new to read
        assert supervisor.first_trigger_done()
        supervisor.control.write("idle", {"idle_at": started - 30})
        supervisor.control.write("progress", {"batch_id": 0, "completed_at": started + 2})  # a new topic's first
        assert supervisor.first_trigger_done()
        supervisor.control.write("status", {"state": "failed", "started_at": started, "heartbeat_at": started})
        assert not supervisor.first_trigger_done()
    finally:
        supervisor.close()
