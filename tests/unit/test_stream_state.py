import json
import subprocess
import sys
from pathlib import Path

from k2.settings import Settings
from k2.streams.checkpoint import checkpoint_problem
from k2.streams.state import InstanceLock, StreamPaths, read_json, write_json


def test_instance_lock_is_exclusive_across_processes_and_probed_without_taking_it(tmp_path: Path) -> None:
    lock = InstanceLock(tmp_path / "instance.lock")
    assert lock.holder_pid() is None
    assert lock.acquire()
    probe = (
        "import sys; from pathlib import Path; from k2.streams.state import InstanceLock; "
        "l = InstanceLock(Path(sys.argv[1])); print(l.holder_pid(), l.acquire())"
    )
    out = subprocess.run([sys.executable, "-c", probe, str(lock.path)], capture_output=True, text=True, check=True)
    import os

    assert out.stdout.split() == [str(os.getpid()), "False"]
    lock.release()
    out = subprocess.run([sys.executable, "-c", probe, str(lock.path)], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["None", "True"]


def test_json_state_is_replaced_atomically(tmp_path: Path) -> None:
    path = tmp_path / "status.json"
    write_json(path, {"state": "running"})
    assert read_json(path) == {"state": "running"}
    path.write_text("{torn")
    assert read_json(path) is None
    assert list(tmp_path.glob(".*.tmp")) == []


def test_stream_paths_live_under_k2_home(tmp_path: Path) -> None:
    paths = StreamPaths.of(Settings.from_env({"K2_HOME": str(tmp_path)}), "kraken").ensure()
    assert paths.local_checkpoint == tmp_path.resolve() / "checkpoints" / "kraken"
    assert paths.checkpoint == str(paths.local_checkpoint)
    assert paths.root.is_dir() and paths.log_file.parent.is_dir()


def test_checkpoints_on_s3_are_no_local_directory(tmp_path: Path) -> None:
    settings = Settings.from_env({"K2_HOME": str(tmp_path), "K2_STREAM_CHECKPOINTS": "s3a://k2-lake/cp/"})
    paths = StreamPaths.of(settings, "kraken").ensure()
    assert paths.checkpoint == "s3a://k2-lake/cp/kraken" and paths.local_checkpoint is None
    assert not (tmp_path / "checkpoints").exists()


def test_checkpoint_checks(tmp_path: Path) -> None:
    cp = tmp_path / "cp"
    assert checkpoint_problem(cp) is None  # first start
    (cp / "offsets").mkdir(parents=True)
    (cp / "metadata").write_text(json.dumps({"id": "abc"}))
    (cp / "offsets" / "0").write_text('v1\n{"batchWatermarkMs":0}\n{"t":{"0":5}}\n')
    assert checkpoint_problem(cp) is None
    (cp / "offsets" / "1").write_bytes(b'v1\n{"batchWatermarkMs":0\n\x00\x00')
    problem = checkpoint_problem(cp)
    assert problem is not None and str(cp / "offsets" / "1") in problem.cause
    assert "restore" in problem.fix and "never deletes" in problem.fix
    assert (cp / "offsets" / "1").exists()  # reported, not touched
    (cp / "metadata").write_text("garbage")
    assert "metadata" in checkpoint_problem(cp).cause


def test_a_launch_on_another_host_is_given_its_start_up_time_before_a_check_here_starts_a_copy(
    tmp_path: Path,
) -> None:
    from k2.streams.health import SupervisorState
    from k2.streams.supervisor import StreamSupervisor

    now = [1_000_000.0]
    settings = Settings.from_env({"K2_HOME": str(tmp_path), "K2_STREAM_START_TIMEOUT_S": "180"})
    supervisor = StreamSupervisor(settings, "binance", clock=lambda: now[0])
    supervisor.save_state(SupervisorState(launched_at=now[0], launcher_pgid=4242, launcher_host="another-host"))
    try:
        # that host's job has not written a word yet, then says it is starting: either way, starting
        assert supervisor.inspect(known_lag=5).action == "none" and supervisor.inspect(known_lag=5).state == "starting"
        supervisor.control.write("status", {"state": "starting", "host": "another-host", "started_at": now[0] + 2})
        now[0] += 100
        assert supervisor.inspect(known_lag=5).reason == "starting"
        now[0] += 81  # its start-up time has run out without a running job: down, restarted after back-off
        late = supervisor.inspect(known_lag=5)
        assert (late.state, late.action) == ("down", "wait") and "restart in" in late.reason
        now[0] -= 170  # that job failed: no need to wait for the time to run out
        supervisor.control.write("status", {"state": "failed", "host": "another-host", "started_at": now[0] - 5})
        assert supervisor.inspect(known_lag=5).state == "down"
    finally:
        supervisor.close()
