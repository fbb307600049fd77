"""Bronze streaming: sustained throughput, Kafka-to-commit latency, and supervisor restart time.

All in one run, on an embedded broker of its own, with the stream launched the production way
(supervisor -> launcher -> spark-submit, local master):

1. throughput: a topic pre-filled with --backlog Binance messages, drained from the earliest
   offset with K2's defaults; rows/s over the batches that drained it.
2. latency: Binance at 10,000 msg/s plus Kraken at 500 msg/s, both streams running, for the seeds'
   configuration (10 s trigger, 10,000 offsets per trigger) and for K2's defaults. Latency per row is
   the commit time of the Iceberg snapshot that made the row visible minus the row's Kafka timestamp;
   a configuration that cannot keep up commits none of the window's rows, so how far behind each
   stream is at the window's end (records, age of the oldest) is reported too.
3. restart: kill -9 of the Binance driver under load; seconds until the supervisor's replacement
   completed a batch.

    .venv/bin/python benchmarks/bronze_stream.py [--backlog 2000000] [--window 60]

Prints a table and writes benchmarks/results/bronze_stream.json.
Targets (issue 4): >= 50,000 rows/s on local[2]; p99 <= 2 s at 10k msg/s; restart <= 60 s.
"""

from __future__ import annotations

import argparse
import os
import signal
import threading
import time
from pathlib import Path

from _harness import embedded_broker, progress, write_results
from latency import LatencyCollector

from k2.exchanges import get_exchange
from k2.feeds.producer import TradeProducer
from k2.feeds.runner import run_simulated_feed
from k2.kafka.topics import ensure_topics
from k2.lake.catalog import load_catalog
from k2.lake.tables import all_tables, ensure_tables
from k2.monitoring.metrics import kafka_lag
from k2.settings import Settings
from k2.streams.state import StreamPaths, read_json, recent_progress
from k2.streams.supervisor import StreamSupervisor

WARM_UP_S = 20.0
SEEDS = {"K2_BRONZE_TRIGGER_INTERVAL_S": "10", "K2_BRONZE_MAX_OFFSETS_PER_TRIGGER": "10000"}


def configure(settings: Settings, home: Path, **extra: str) -> Settings:
    """Point this process (and so every stream it launches) at one K2 installation."""
    for key in [k for k in os.environ if k.startswith("K2_")]:
        del os.environ[key]
    # each phase has topics of its own: a stream starts from the earliest offset, and must not
    # first drain what an earlier phase produced
    env = {
        "K2_HOME": str(home),
        "K2_TOPIC_TEMPLATE": f"bench-{home.name}.{{exchange}}.raw",
        "K2_KAFKA_PORT": str(settings.kafka.port),
        "K2_KAFKA_CONTROLLER_PORT": str(settings.kafka.controller_port),
        "K2_SPARK_UI_ENABLED": "false",
        "K2_STREAM_CHECK_INTERVAL_S": "2",
        "K2_LOG_LEVEL": "WARNING",
        **extra,
    }
    os.environ.update(env)
    scoped = Settings.from_env()
    ensure_topics(scoped)
    ensure_tables(load_catalog(scoped.lake), all_tables(scoped))
    return scoped


class Supervisors:
    """The production supervisor loop, in background threads, for the given exchanges."""

    def __init__(self, settings: Settings, exchanges: list[str]) -> None:
        self.stop = threading.Event()
        self.supervisors = [StreamSupervisor(settings, ex) for ex in exchanges]
        self.threads = [
            threading.Thread(
                target=s.supervise,
                args=(24 * 3600,),
                kwargs={"should_continue": lambda: not self.stop.is_set()},
                daemon=True,
            )
            for s in self.supervisors
        ]
        for t in self.threads:
            t.start()

    def shutdown(self) -> None:
        self.stop.set()
        for t in self.threads:
            t.join(30)
        for s in self.supervisors:
            s.request_stop(timeout_s=60)
            s.close()


def wait(condition, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out waiting for {what}")
        time.sleep(0.5)


def feed(
    settings: Settings, exchange: str, rate: float, count: int | None = None, stop: threading.Event | None = None
) -> threading.Thread:
    ex = get_exchange(exchange)
    producer = TradeProducer(settings, ex, report_successes=False)
    thread = threading.Thread(
        target=run_simulated_feed,
        args=(producer, ex, list(ex.default_symbols)),
        kwargs={"rate": rate, "count": count, "stop": stop, "progress_every_s": 3600},
        daemon=True,
    )
    thread.start()
    return thread


def throughput(settings: Settings, home: Path, backlog: int) -> dict:
    scoped = configure(settings, home, K2_EXCHANGES="binance")
    progress(f"throughput: pre-filling {backlog:,} messages")
    feed(scoped, "binance", rate=0, count=backlog).join()
    paths = StreamPaths.of(scoped, "binance")
    supervisors = Supervisors(scoped, ["binance"])
    try:
        progress("throughput: draining with K2's defaults")
        wait(lambda: sum(r["rows"] for r in recent_progress(paths, 10_000)) >= backlog, 900, "the backlog")
    finally:
        supervisors.shutdown()
    batches = [r for r in recent_progress(paths, 10_000) if r["rows"] > 0]
    steady = batches[1:] or batches  # the first batch also pays for JIT warm-up
    rows = sum(r["rows"] for r in steady)
    busy_s = sum(r["batch_duration_ms"] for r in steady) / 1000
    return {
        "backlog": backlog,
        "batches": len(batches),
        "rows_per_s": round(rows / busy_s),
        "first_batch_s": round(batches[0]["batch_duration_ms"] / 1000, 1),
        "max_offsets_per_trigger": scoped.streams.max_offsets_per_trigger,
    }


def latency(
    settings: Settings, home: Path, window_s: float, extra: dict[str, str], *, measure_restart: bool = True
) -> dict:
    """Steady state: streams up first, then the feeds, a warm-up, then the measured window."""
    scoped = configure(settings, home, K2_EXCHANGES="binance,kraken", **extra)
    stop = threading.Event()
    supervisors = Supervisors(scoped, ["binance", "kraken"])
    paths = {ex: StreamPaths.of(scoped, ex) for ex in ("binance", "kraken")}
    feeds: list[threading.Thread] = []
    try:
        wait(
            lambda: all((read_json(p.status) or {}).get("state") == "running" for p in paths.values()),
            300,
            "both streams to run",
        )
        feeds = [feed(scoped, "binance", 10_000, stop=stop), feed(scoped, "kraken", 500, stop=stop)]
        wait(
            lambda: all((read_json(p.progress) or {}).get("batch_id", -1) >= 3 for p in paths.values()),
            300,
            "both streams' first batches",
        )
        time.sleep(WARM_UP_S)  # JIT and file-system caches settle before the window opens
        progress(f"latency: warm, measuring {window_s:.0f}s")
        since_ms = int(time.time() * 1000)
        collectors = {ex: LatencyCollector(scoped, ex, since_ms) for ex in ("binance", "kraken")}
        for collector in collectors.values():
            collector.thread.start()
        time.sleep(window_s)  # the measurement window itself, not a synchronisation
        until_ms = int(time.time() * 1000)
        behind = {ex: kafka_lag(scoped, ex) for ex in ("binance", "kraken")}  # a stream that cannot keep up
        # the window's last records are committed before anything else happens
        wait(
            lambda: all(
                (read_json(p.progress) or {}).get("completed_at", 0) * 1000 > until_ms + 2000 for p in paths.values()
            ),
            120,
            "the window's last commits",
        )
        restart = restart_time(scoped, paths["binance"]) if measure_restart and not extra else None
    finally:
        stop.set()
        for t in feeds:
            t.join(60)
        supervisors.shutdown()
    result = {}
    for exchange, collector in collectors.items():
        result[exchange] = collector.summary(until_ms)
        result[exchange]["lag_records_at_end"], result[exchange]["lag_s_at_end"] = behind[exchange]
    result["trigger_s"] = scoped.streams.trigger_interval_s
    result["max_offsets_per_trigger"] = scoped.streams.max_offsets_per_trigger
    if restart is not None:
        result["restart_after_kill_s"] = restart
    return result


def restart_time(settings: Settings, paths: StreamPaths) -> float:
    status = read_json(paths.status)
    killed_at = time.time()
    os.kill(status["driver_pid"], signal.SIGKILL)
    progress("restart: driver killed, waiting for the replacement's first batch")
    wait(
        lambda: (
            (read_json(paths.progress) or {}).get("completed_at", 0) > killed_at
            and (read_json(paths.status) or {}).get("pid") != status["pid"]
        ),
        300,
        "the restart",
    )
    return round(time.time() - killed_at, 1)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--backlog", type=int, default=2_000_000)
    parser.add_argument("--window", type=float, default=60.0)
    args = parser.parse_args()
    results: dict = {}
    with embedded_broker() as settings:
        root = settings.home
        results["throughput"] = throughput(settings, root / "throughput", args.backlog)
        progress("latency: seeds' configuration (10 s trigger, 10,000 offsets)")
        results["latency_seeds_config"] = latency(settings, root / "seeds", args.window, SEEDS)
        progress("latency: K2 defaults")
        results["latency_k2_defaults"] = latency(settings, root / "k2", args.window, {})
    k2, seeds = results["latency_k2_defaults"], results["latency_seeds_config"]
    results["targets"] = {
        "throughput_min_rows_per_s": 50_000,
        "p99_max_s": 2.0,
        "restart_max_s": 60,
        "met": results["throughput"]["rows_per_s"] >= 50_000
        and k2["binance"].get("p99_s", 1e9) <= 2.0
        and k2.get("restart_after_kill_s", 1e9) <= 60,
    }
    path = write_results("bronze_stream", results)
    print(f"throughput (local[2], K2 defaults): {results['throughput']['rows_per_s']:,} rows/s")
    print(f"{'config':22} {'exchange':9} {'p50 s':>7} {'p99 s':>7} {'rows':>9}  behind at the window's end")
    for label, r in (("seeds 10s/10k", seeds), ("K2 defaults", k2)):
        for ex in ("binance", "kraken"):
            x = r[ex]
            behind = (
                f"{x['lag_records_at_end']:,} records, oldest {x['lag_s_at_end']} s old"
                if x.get("lag_records_at_end") is not None
                else "unknown"
            )
            print(f"{label:22} {ex:9} {x.get('p50_s', '-'):>7} {x.get('p99_s', '-'):>7} {x['rows']:>9,}  {behind}")
    print(f"supervisor restart after kill -9: {k2.get('restart_after_kill_s')} s")
    print(f"targets met: {results['targets']['met']}  (written to {path})")


if __name__ == "__main__":
    main()
