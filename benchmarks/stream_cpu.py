"""CPU of one Bronze stream at a quiet and a steady feed, per stream configuration, in one run.

Issue #14's targets: a stream uses <= 5% of a core at 0 msg/s and <= 15% at 200 msg/s. Each
configuration runs the Binance stream the production way (supervisor -> launcher -> spark-submit,
local master) on a topic of its own; after --warm-up seconds at 200 msg/s, the CPU time of the
stream's whole process group (JVM and Python driver) is read over --window seconds at 200 msg/s,
then over --window seconds with the feed stopped and everything committed, with the part the JVM
spent compiling. The first configuration is the baseline. With --baseline-ref, the baseline is the
stream code of that git revision (its ``plugins/``, first on the stream's PYTHONPATH), run against
this checkout's jars and settings.

    .venv/bin/python benchmarks/stream_cpu.py [--window 90] [--rate 200] [--warm-up 300] [--baseline-ref main]

Prints a table and writes benchmarks/results/stream_cpu.json.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import tempfile
import threading
import time
from pathlib import Path

import psutil
from _harness import embedded_broker, jit_seconds, progress, write_results
from bronze_stream import Supervisors, configure, feed, wait

from k2.lake.catalog import load_catalog
from k2.lake.tables import bronze_table
from k2.monitoring.metrics import kafka_lag
from k2.streams.state import StreamPaths, read_json

# A stream's JVM compiles for minutes after it starts (JFR of a stream at 200 msg/s: 9.5 s of JIT
# compilation in the minute after a 30 s warm-up, falling to 0.4 s per 10 s by the second minute):
# a window that opens early measures the warm-up, not the stream that runs for days.
WARM_UP_S = 300.0
# name -> K2_* settings; the first is the baseline the others are compared with
CONFIGURATIONS: dict[str, dict[str, str]] = {
    "K2's defaults": {},
    "code generation (compiled every batch)": {"K2_BRONZE_CODEGEN": "true"},
    "2 s trigger": {"K2_BRONZE_TRIGGER_INTERVAL_S": "2"},
}
ROOT = Path(__file__).resolve().parents[1]


def group_cpu_s(pgid: int) -> float:
    """User + system CPU seconds of every live process in the process group."""
    total = 0.0
    for proc in psutil.process_iter():
        try:
            if os.getpgid(proc.pid) == pgid:
                times = proc.cpu_times()
                total += times.user + times.system + times.children_user + times.children_system
        except (psutil.Error, ProcessLookupError):
            continue
    return total


def jit_s(pgid: int) -> float:
    """Seconds the group's JVMs have spent compiling."""
    total = 0.0
    for proc in psutil.process_iter():
        try:
            if os.getpgid(proc.pid) == pgid and proc.name() == "java":
                total += jit_seconds(proc.pid)
        except (psutil.Error, ProcessLookupError):
            continue
    return total


def cpu_share(pgid: int, window_s: float) -> tuple[float, float]:
    """Share of one core the group used over the window, and the part of it that was JIT compilation."""
    before, compiled, started = group_cpu_s(pgid), jit_s(pgid), time.monotonic()
    time.sleep(window_s)  # the measurement window itself, not a synchronisation
    elapsed = time.monotonic() - started
    return (group_cpu_s(pgid) - before) / elapsed, (jit_s(pgid) - compiled) / elapsed


def measure(settings, home: Path, extra: dict[str, str], rate: float, window_s: float, warm_up_s: float) -> dict:
    scoped = configure(settings, home, K2_EXCHANGES="binance", **extra)
    paths = StreamPaths.of(scoped, "binance")
    supervisors = Supervisors(scoped, ["binance"])
    stop = threading.Event()
    feeder = None
    try:
        wait(lambda: (read_json(paths.status) or {}).get("state") == "running", 300, "the stream to run")
        feeder = feed(scoped, "binance", rate, stop=stop)
        wait(lambda: (read_json(paths.progress) or {}).get("batch_id", -1) >= 5, 300, "the first batches")
        progress(f"warming up for {warm_up_s:.0f}s at {rate:g} msg/s")
        time.sleep(warm_up_s)  # the JIT settles before the window opens
        pgid = supervisors.supervisors[0].load_state().launcher_pgid
        progress(f"{rate:g} msg/s for {window_s:.0f}s")
        busy, busy_jit = cpu_share(pgid, window_s)
        batches = read_json(paths.progress) or {}
        stop.set()
        feeder.join(60)
        wait(lambda: kafka_lag(scoped, "binance")[0] == 0, 120, "everything committed")
        progress(f"0 msg/s for {window_s:.0f}s")
        quiet, quiet_jit = cpu_share(pgid, window_s)
        metadata = bronze_metadata(scoped, "binance")
    finally:
        stop.set()
        supervisors.shutdown()
        for key in [k for k in extra if not k.startswith("K2_")]:  # e.g. a baseline's PYTHONPATH
            os.environ.pop(key, None)
    return {
        "cpu_share_at_rate": round(busy, 3),
        "cpu_share_at_0": round(quiet, 3),
        "jit_share_at_rate": round(busy_jit, 3),
        "jit_share_at_0": round(quiet_jit, 3),
        "warm_up_s": warm_up_s,
        "last_batch_id": batches.get("batch_id"),
        **metadata,
        "settings": extra,
    }


def bronze_metadata(settings, exchange: str) -> dict[str, int]:
    """What each commit of the stream rewrites: the current snapshot's manifests, and the snapshots."""
    table = load_catalog(settings.lake).load_table(bronze_table(exchange).identifier)
    current = table.current_snapshot()
    return {
        "bronze_manifests": len(current.manifests(table.io)) if current else 0,
        "bronze_snapshots": len(table.snapshots()),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--window", type=float, default=90.0)
    parser.add_argument("--rate", type=float, default=200.0)
    parser.add_argument("--baseline-ref", help="git revision whose stream code is the baseline")
    parser.add_argument("--warm-up", type=float, default=WARM_UP_S, help="seconds at the rate before the window")
    parser.add_argument("--only", help="comma-separated configurations to run (default: all)")
    args = parser.parse_args()
    results: dict[str, dict] = {}
    with embedded_broker() as settings, tempfile.TemporaryDirectory(prefix="k2-baseline-") as old:
        only = args.only.split(",") if args.only else list(CONFIGURATIONS)
        configurations = {name: extra for name, extra in CONFIGURATIONS.items() if name in only}
        if args.baseline_ref:
            archive = subprocess.run(
                ["git", "-C", str(ROOT), "archive", args.baseline_ref, "plugins"], capture_output=True, check=True
            ).stdout
            subprocess.run(["tar", "-x", "-C", old], input=archive, check=True)
            # outside a checkout that code would look for jars in ~/.k2/jars: it gets this one's
            baseline = {"PYTHONPATH": f"{old}/plugins", "K2_JARS_DIR": str(settings.jvm.jars_dir)}
            configurations = {f"git {args.baseline_ref}": baseline, **configurations}
        for n, (name, extra) in enumerate(configurations.items()):
            progress(f"configuration: {name}")
            try:
                results[name] = measure(
                    settings, settings.home / f"cfg{n}", extra, args.rate, args.window, args.warm_up
                )
            except TimeoutError as exc:  # a configuration that never runs is a result, not the end of the run
                results[name] = {"error": str(exc), "settings": extra, "cpu_share_at_rate": 0, "cpu_share_at_0": 0}
    baseline = next(iter(results.values()))
    print(f"\n{'configuration':45} {'CPU at ' + format(args.rate, 'g') + ' msg/s':>16} {'CPU at 0 msg/s':>16}")
    for name, r in results.items():
        ratio = r["cpu_share_at_rate"] / baseline["cpu_share_at_rate"] if baseline["cpu_share_at_rate"] else 0
        print(
            f"{name:45} {r['cpu_share_at_rate']:>15.1%} {r['cpu_share_at_0']:>15.1%}   x{ratio:.2f} of baseline, "
            f"JIT {r.get('jit_share_at_rate', 0):.1%} / {r.get('jit_share_at_0', 0):.1%}, "
            f"Bronze: {r.get('bronze_manifests')} manifests, {r.get('bronze_snapshots')} snapshots"
        )
    print("targets: <= 15% at 200 msg/s, <= 5% at 0 msg/s (of one core)")
    path = write_results(
        "stream_cpu",
        {"window_s": args.window, "rate": args.rate, "baseline_ref": args.baseline_ref, "configurations": results},
    )
    print(f"results: {path}")


if __name__ == "__main__":
    main()
