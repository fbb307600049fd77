"""The whole product on one machine: `k2 up`'s stack under load, against the streams alone.

1. up: `k2 up` exactly as the README runs it (broker, topics, tables, Airflow with the supervisor,
   monitoring, medallion and maintenance DAGs unpaused, simulated feeds at K2_FEED_SIM_RATE, the
   first k2_medallion run), in a state directory and on ports of its own; seconds until the first
   Gold bar is visible.
2. load: the feeds switched to 10,000 msg/s (Binance) + 500 msg/s (Kraken); after a warm-up, a
   measured window (default 20 min) with everything running. Inside it a k2_maintenance run
   starts (minute 1) and then a k2_medallion run over the load so far (minute 2), so the batch
   competes with maintenance as it does after `k2 up`.
   Reported: per stream p50/p99 Kafka-timestamp-to-Iceberg-commit over the window and per minute,
   lag (sampled every 1.5-2.5 s at random: max, per-minute median and max, at the end), each
   batch and maintenance task's queue wait and run time, Silver+Gold throughput, CPU seconds per
   component (broker, each stream, batch Spark, Airflow, feeds, sampled every 2 s from the process
   table). Each stream's CPU share is sampled at `k2 up`'s feed rate (200 msg/s) and with the feeds
   stopped twice: before the load (JVMs minutes old, still JIT-compiling) and after the runs (JVMs
   as old as the benchmark).
3. baseline (same run, first): the same streams and feeds with Airflow absent
   (benchmarks/bronze_stream.py's latency phase), so the full stack's overhead is a ratio.

    .venv/bin/python benchmarks/full_stack.py [--window 1200] [--baseline-window 300] [--no-baseline]
                                              [--run-timeout 1800]

Prints a table and writes benchmarks/results/full_stack.json. Targets (issue 14): Binance p99
<= 3 s over the window and <= 5 s in every minute, lag not growing; Kraken p99 <= 3 s; batch
>= 40,000 trades/s of Silver+Gold time; the batch waits <= 60 s behind maintenance; first Gold
bar <= 5 min after `k2 up` starts.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import json
import os
import signal
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

import bronze_stream
import psutil
from _harness import embedded_broker, free_port, jit_seconds, progress, write_results
from latency import LatencyCollector

from k2 import dag_ids
from k2.lake.catalog import load_catalog
from k2.lake.tables import gold_table
from k2.monitoring.metrics import kafka_lag
from k2.runtime import procs
from k2.runtime.airflow import AirflowServices
from k2.runtime.airflow_api import AirflowApi
from k2.runtime.stack import bring_down, bring_up, feed_pid_file, start_feed
from k2.settings import Settings, load_settings

RATES = {"binance": 10_000, "kraken": 500}
EXCHANGES = tuple(RATES)


# --- CPU per component ---------------------------------------------------------------------------
def component(proc: psutil.Process, home: str) -> str | None:
    """Which part of the product a process is, from its command line; None: not ours."""
    try:
        cmd = " ".join(proc.cmdline())
        env_home = proc.environ().get("K2_HOME", "")
    except (psutil.Error, OSError):
        return None
    if home not in cmd and env_home != home:
        return None
    if "kafka.Kafka" in cmd:
        return "broker"
    if " feed " in f"{cmd} " and "k2.cli" in cmd:
        return "feeds"
    if "k2.cli query serve" in cmd:
        return "query_server"
    for exchange in EXCHANGES:
        if f"k2-bronze-{exchange}" in cmd or f"bronze_ingest.py --exchange {exchange}" in cmd:
            return f"stream_{exchange}"
        if f"k2.streams.launcher --exchange {exchange}" in cmd:
            return f"stream_{exchange}"
    batch = ("SparkConnectServer", "medallion.py", "maintenance.py", "k2-silver", "k2-gold")
    if any(name in cmd for name in batch):  # the warm Spark Connect server, or a spark-submit per job
        return "batch_spark"
    if "airflow" in cmd:
        return "airflow"
    return None


class CpuSampler:
    """CPU seconds per component between start() and stop(): each process's CPU time is sampled
    every ``every_s`` seconds, so a process that ends between two samples loses at most that much."""

    def __init__(self, home: Path, every_s: float = 2.0) -> None:
        self.home, self.every_s = str(home), every_s
        self.first: dict[int, float] = {}
        self.last: dict[int, float] = {}
        self.kind: dict[int, str] = {}
        self.stopped = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)

    def start(self) -> None:
        self._sample(initial=True)
        self.thread.start()

    def stop(self) -> dict[str, float]:
        self.stopped.set()
        self.thread.join(10)
        self._sample()
        totals: dict[str, float] = {}
        for pid, kind in self.kind.items():
            totals[kind] = totals.get(kind, 0.0) + self.last[pid] - self.first.get(pid, 0.0)
        return {k: round(v, 1) for k, v in sorted(totals.items())}

    def _run(self) -> None:
        while not self.stopped.wait(self.every_s):
            self._sample()

    def _sample(self, initial: bool = False) -> None:
        for proc in psutil.process_iter():
            pid = proc.pid
            try:
                if pid not in self.kind:
                    kind = component(proc, self.home)
                    if kind is None:
                        continue
                    self.kind[pid] = kind
                times = proc.cpu_times()
            except (psutil.Error, OSError):
                continue
            used = times.user + times.system
            if initial:
                self.first[pid] = used
            self.last[pid] = used


# --- Airflow: task instances ---------------------------------------------------------------------
def task_timings(tasks: list[dict]) -> dict[str, dict]:
    """Per task: state, queue wait (queued -> started) and run time, in seconds."""

    def at(value: str | None) -> dt.datetime | None:
        return dt.datetime.fromisoformat(value) if value else None

    out = {}
    for t in tasks:
        queued, started, ended = at(t.get("queued_when")), at(t.get("start_date")), at(t.get("end_date"))
        out[t["task_id"]] = {
            "state": t.get("state"),
            "queue_wait_s": round((started - queued).total_seconds(), 1) if queued and started else None,
            "run_s": round((ended - started).total_seconds(), 1) if started and ended else None,
        }
    return out


# --- latency and lag -----------------------------------------------------------------------------
class LagSampler:
    """Each stream's lag (Kafka end offsets less its committed offsets) every 1.5-2.5 s, at random.

    Within a micro-batch cycle the lag swings by a trigger's worth of records (10,000 at 1 s): it
    grows until the stream commits, then drops. Sampled every 10 s (plus the sampler's own time),
    a minute's last sample fell a little later in that cycle each minute, so the per-minute figures
    rose for minutes and fell back, a saw-tooth, while the stream kept up. Random spacing covers
    every phase; each minute's median and maximum over its ~30 samples are what the report gives."""

    def __init__(self, settings: Settings, seed: int = 14) -> None:
        import random

        self.settings, self.random = settings, random.Random(seed)
        self.samples: dict[str, list[tuple[float, int]]] = {ex: [] for ex in EXCHANGES}
        self.stopped = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        from k2.kafka.groups import bronze_group
        from k2.kafka.lag import offsets_consumer

        # one consumer per stream for the whole window: monitoring's measure, without its per-call consumer
        consumers = {ex: offsets_consumer(self.settings.kafka, bronze_group(ex)) for ex in EXCHANGES}
        try:
            while not self.stopped.wait(self.random.uniform(1.5, 2.5)):
                for exchange, consumer in consumers.items():
                    with contextlib.suppress(Exception):  # Kafka busy: this sample is missing, not wrong
                        records, _ = kafka_lag(self.settings, exchange, consumer, with_age=False)
                        if records is not None:
                            self.samples[exchange].append((time.time(), records))
        finally:
            for consumer in consumers.values():
                consumer.close()

    def summary(self, since: float) -> dict:
        out, trigger_s = {}, self.settings.streams.trigger_interval_s
        for exchange, samples in self.samples.items():
            minutes: dict[int, list[int]] = {}
            for at, records in samples:
                if at >= since:
                    minutes.setdefault(int((at - since) // 60), []).append(records)
            values = [r for at, r in samples if at >= since]
            span = range(max(minutes, default=-1) + 1)
            medians = [statistics.median(minutes[m]) if m in minutes else None for m in span]
            known = [m for m in medians if m is not None]
            out[exchange] = {
                "samples": len(values),
                "max_records": max(values, default=None),
                "end_records": values[-1] if values else None,
                "per_minute_median_records": medians,
                "per_minute_max_records": [max(minutes[m]) if m in minutes else None for m in span],
                # growing: the last minute's median above the first's by more than a trigger's worth
                # of records (the swing within a micro-batch cycle)
                "growing": bool(known) and known[-1] > known[0] + RATES[exchange] * trigger_s,
            }
        return out


# --- phases --------------------------------------------------------------------------------------
def gold_rows(settings: Settings) -> int:
    table = load_catalog(settings.lake).load_table(gold_table("1m").identifier)
    snapshot = table.current_snapshot()
    return int(snapshot.summary.get("total-records") or 0) if snapshot and snapshot.summary else 0


def isolate(home: Path) -> Settings:
    """Point this process (and every process it starts) at a K2 installation of its own."""
    for key in [k for k in os.environ if k.startswith("K2_")]:
        del os.environ[key]
    os.environ.update(
        {
            "K2_HOME": str(home),
            "K2_KAFKA_PORT": str(free_port()),
            "K2_KAFKA_CONTROLLER_PORT": str(free_port()),
            "K2_AIRFLOW_PORT": str(free_port()),
            "K2_AIRFLOW_LOG_SERVER_PORT": str(free_port()),
            "K2_SPARK_CONNECT_PORT": str(free_port()),
        }
    )
    return load_settings()


def switch_feeds(settings: Settings, duration_s: float) -> None:
    """Replace `k2 up`'s feeds by the load: same pid files, so `k2 down` stops these too."""
    for exchange, rate in RATES.items():
        procs.stop(feed_pid_file(settings, exchange))
        start_feed(settings, exchange, rate=rate, duration_s=duration_s)


def restore_feeds(settings: Settings) -> None:
    """`k2 up`'s own feeds again, at K2_FEED_SIM_RATE, in place of the load."""
    for exchange in EXCHANGES:
        procs.stop(feed_pid_file(settings, exchange))
        start_feed(settings, exchange)


def caught_up(settings: Settings, exchange: str, timeout_s: float) -> None:
    """Until the stream has committed all but a second of its feed (the load's backlog is gone)."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        records, _ = kafka_lag(settings, exchange)
        if records is not None and records <= settings.airflow.feed_sim_rate:
            return
        time.sleep(5)
    progress(f"{exchange}: still behind after {timeout_s:.0f}s; sampling its CPU anyway")


def wait_run(api: AirflowApi, dag_id: str, run_id: str, timeout_s: float) -> str:
    deadline = time.monotonic() + timeout_s
    state = ""
    while state not in ("success", "failed") and time.monotonic() < deadline:
        time.sleep(10)
        state = api.run_state(dag_id, run_id)
    return state


def stream_cpu_share(settings: Settings, home: Path, sample_s: float) -> dict:
    """Each stream's CPU use (share of one core) at `k2 up`'s feed rate, then with the feeds stopped."""
    shares = {}
    for label in (f"{settings.airflow.feed_sim_rate:g}_msg_per_s", "0_msg_per_s"):
        if label == "0_msg_per_s":
            for exchange in EXCHANGES:
                procs.stop(feed_pid_file(settings, exchange))
            time.sleep(10)  # the last records are committed before the idle sample
        progress(f"stream CPU at {label.replace('_', ' ')}: sampling {sample_s:.0f}s")
        jvms = stream_jvms(home)
        compiled = {ex: jit_seconds(pid) for ex, pid in jvms.items()}
        cpu = CpuSampler(home)
        cpu.start()
        time.sleep(sample_s)
        used = cpu.stop()
        shares[label] = {ex: round(used.get(f"stream_{ex}", 0.0) / sample_s, 3) for ex in EXCHANGES}
        # the part of it each stream's JVM spent compiling (a young JVM compiles for minutes)
        shares[f"{label}_jit"] = {
            ex: round((jit_seconds(pid) - compiled[ex]) / sample_s, 3) for ex, pid in jvms.items()
        }
    return shares


def stream_jvms(home: Path) -> dict[str, int]:
    """Each stream's JVM (its Spark driver), by exchange."""
    found = {}
    for proc in psutil.process_iter():
        with contextlib.suppress(psutil.Error):
            kind = component(proc, str(home))
            if kind and kind.startswith("stream_") and proc.name() == "java":
                found[kind.removeprefix("stream_")] = proc.pid
    return found


def full_stack(result: dict, window_s: float, warmup_s: float, run_timeout_s: float, idle_s: float = 60.0) -> None:
    """Fills ``result`` phase by phase, so a failure keeps what was measured before it."""
    home = Path(tempfile.mkdtemp(prefix="k2-fullstack-"))
    settings = isolate(home)
    cpu_up = CpuSampler(home)
    cpu_up.start()
    started = time.monotonic()
    first_gold: list[float] = []

    def watch_gold() -> None:
        while not first_gold and time.monotonic() - started < 1800:
            try:
                if gold_rows(settings) > 0:
                    first_gold.append(round(time.monotonic() - started, 1))
            except Exception:  # the catalog does not exist yet
                pass
            time.sleep(2)

    watcher = threading.Thread(target=watch_gold, daemon=True)
    watcher.start()
    progress(f"up: `k2 up` in {home}")
    result["home"] = str(home)
    try:
        bring_up(settings)
        result["up_s"] = round(time.monotonic() - started, 1)
        watcher.join(60)
        result["first_gold_bar_s"] = first_gold[0] if first_gold else None
        result["cpu_s_during_up"] = cpu_up.stop()
        result["stream_cpu_share"] = stream_cpu_share(settings, home, idle_s)
        airflow = AirflowServices(settings)
        api = AirflowApi.of(airflow)
        load_started = dt.datetime.now(dt.UTC)
        switch_feeds(settings, warmup_s + window_s + 600)
        progress(f"load: feeds at {RATES}, warming up {warmup_s:.0f}s")
        time.sleep(warmup_s)
        lag = LagSampler(settings)
        lag.thread.start()
        cpu = CpuSampler(home)
        cpu.start()
        since = time.time()
        latency = {ex: LatencyCollector(settings, ex, int(since * 1000)) for ex in EXCHANGES}
        for collector in latency.values():
            collector.thread.start()
        progress(f"load: measuring {window_s:.0f}s")
        stamp = time.strftime("%Y%m%dT%H%M%S")
        maintenance_run, medallion_run = f"bench_maintenance__{stamp}", f"bench_medallion__{stamp}"
        time.sleep(60)
        api.trigger(dag_ids.MAINTENANCE, maintenance_run)
        progress(f"triggered {maintenance_run}")
        time.sleep(60)
        batch_end = dt.datetime.now(dt.UTC)
        conf = {"exchange": "all", "start": load_started.isoformat(), "end": batch_end.isoformat()}
        api.trigger(dag_ids.MEDALLION, medallion_run, conf)
        progress(f"triggered {medallion_run}: {conf['start']} -> {conf['end']}")
        time.sleep(max(0.0, since + window_s - time.time()))
        until = time.time()
        result["cpu_s_window"] = cpu.stop()
        lag.stopped.set()
        result["window_s"] = round(until - since, 1)
        result["lag"] = lag.summary(since)
        time.sleep(10)  # rows produced just before the window closed are committed a few seconds later
        until_ms = int(until * 1000)
        result["latency"] = {ex: collector.summary(until_ms) for ex, collector in latency.items()}
        progress(f"latency: {json.dumps(result['latency'])}")
        progress("load: window closed; waiting for the runs and the window's last commits")
        runs = {}
        wait_until = time.monotonic() + run_timeout_s  # then a run still going is reported as it stands
        for dag_id, run_id in ((dag_ids.MEDALLION, medallion_run), (dag_ids.MAINTENANCE, maintenance_run)):
            state = wait_run(api, dag_id, run_id, max(0.0, wait_until - time.monotonic()))
            state = state or api.run_state(dag_id, run_id)
            runs[dag_id] = {"run_id": run_id, "state": state, "tasks": task_timings(api.task_instances(dag_id, run_id))}
        result["runs"] = runs
        result["batch"] = batch_throughput(api, medallion_run, runs[dag_ids.MEDALLION]["tasks"], conf)
        # again with the streams' JVMs as old as a running installation's: their JIT is done
        restore_feeds(settings)
        for exchange in EXCHANGES:
            caught_up(settings, exchange, timeout_s=600)
        result["stream_cpu_share_warm"] = stream_cpu_share(settings, home, idle_s)
    finally:
        progress("down: `k2 down`")
        bring_down(settings)


def batch_throughput(api: AirflowApi, run_id: str, tasks: dict[str, dict], conf: dict) -> dict:
    """Trades the run's Silver tasks took in, over the wall time of its Silver and Gold tasks."""
    items, steps = 0, {}
    for exchange in EXCHANGES:
        for layer in ("silver", "gold"):
            if tasks.get(f"{exchange}.{layer}", {}).get("state") != "success":
                continue
            report = api.return_value(dag_ids.MEDALLION, run_id, f"{exchange}.{layer}") or {}
            items += int(report.get("items", 0))
            steps[f"{exchange}.{layer}"] = report.get("steps_s")  # where each task's time went
    busy = sum(t["run_s"] or 0 for name, t in tasks.items() if name.endswith((".silver", ".gold")))
    return {
        "interval": f"{conf['start']} -> {conf['end']}",
        "trades": items,
        "silver_gold_s": round(busy, 1),
        "trades_per_s": round(items / busy) if busy else None,
        "steps_s": steps,
    }


def baseline(window_s: float) -> dict:
    """The same streams and feeds with Airflow absent (the isolated Bronze benchmark)."""
    with embedded_broker() as settings, tempfile.TemporaryDirectory(prefix="k2-bench-base-") as home:
        progress(f"baseline: streams alone, {window_s:.0f}s window")
        return bronze_stream.latency(settings, Path(home), window_s, {}, measure_restart=False)


def report(results: dict) -> None:
    full = results["full_stack"]
    base = results.get("baseline", {})
    print(f"\nk2 up: {full.get('up_s')} s; first Gold bar after {full.get('first_gold_bar_s')} s")
    print(f"{'stream':8} {'p50 s':>7} {'p99 s':>7} {'worst minute p99 s':>19} {'baseline p99 s':>15} {'ratio':>6}")
    for exchange in EXCHANGES:
        lat = full.get("latency", {}).get(exchange, {})
        worst = max((v for v in lat.get("p99_per_minute_s", []) if v is not None), default=None)
        base_p99 = base.get(exchange, {}).get("p99_s")
        ratio = round(lat["p99_s"] / base_p99, 2) if base_p99 and lat.get("p99_s") else None
        p50, p99 = lat.get("p50_s"), lat.get("p99_s")
        print(f"{exchange:8} {p50!s:>7} {p99!s:>7} {worst!s:>19} {base_p99!s:>15} {ratio!s:>6}")
    print(f"lag (records): {json.dumps(full.get('lag'))}")
    for dag_id, run in full.get("runs", {}).items():
        print(f"{dag_id} {run['state']}: {json.dumps(run['tasks'])}")
    print(f"batch: {json.dumps(full.get('batch'))}")
    print(f"CPU seconds in the window: {json.dumps(full.get('cpu_s_window'))}")
    print(f"stream CPU (share of a core), after `k2 up`: {json.dumps(full.get('stream_cpu_share'))}")
    print(f"stream CPU (share of a core), after the load: {json.dumps(full.get('stream_cpu_share_warm'))}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--window", type=float, default=1200.0, help="measured window under load, seconds")
    parser.add_argument("--warmup", type=float, default=60.0, help="load before the window opens, seconds")
    parser.add_argument("--baseline-window", type=float, default=300.0, help="window of the baseline, seconds")
    parser.add_argument("--no-baseline", action="store_true", help="skip the Airflow-less baseline")
    parser.add_argument(
        "--run-timeout", type=float, default=1800.0, help="after the window, wait this long for the runs to end"
    )
    args = parser.parse_args(argv)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # a stopped benchmark still runs `k2 down`
    results: dict = {"rates_msg_per_s": RATES}
    if not args.no_baseline:
        results["baseline"] = baseline(args.baseline_window)
    results["full_stack"] = {}
    try:
        full_stack(results["full_stack"], args.window, args.warmup, args.run_timeout)
    finally:  # whatever was measured before a failure is still printed and written
        report(results)
        print(f"\nresults: {write_results('full_stack', results)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
