"""Hybrid query latency with the streams running: k2.query against Iceberg alone.

On an embedded broker of its own: both Bronze streams supervised the production way, Binance at
10,000 msg/s and Kraken at 500 msg/s. After --fill-s seconds of data, one Silver+Gold batch runs
(in-process Spark, as a medallion run does) over everything ingested so far; the feeds go on for
--after-s more seconds, so that Bronze holds rows Silver has not processed and Kafka holds records
Bronze has not committed. Then, with feeds and streams still running, for each of

- the last 60 s of BTCUSDT's trades (target <= 250 ms);
- one hour of BTC-USDT 1m bars ending now (target <= 1 s);

--served queries through k2.query with the query server running (``k2 query serve``, as `k2 up` runs
it, in a process of its own: it followed both topics from the start and judged each record once),
each after a random pause of up to --gap-s, so that they come at any moment of the server's rounds
(the target's verdict); then --repeats turns of three paths: the served query, the same query
without a server (``k2.query.hybrid``: Silver/Gold + unprocessed Bronze + Kafka tail, judged at query
time) and Iceberg alone (pyiceberg scans of Silver / Gold for the same window: what a query without
the tail returns). A turn's served query follows the previous turn's query without the server, which
holds both cores for seconds, so they are reported apart (``served_after_no_server``). With
--compare K2_NAME=VALUE, the paced served queries are asked again of a server started with those
settings, then of one with the defaults, in the same run.

    .venv/bin/python benchmarks/query.py [--fill-s 60] [--after-s 30] [--repeats 5] [--served 30]
        [--gap-s 2] [--compare K2_QUERY_RECENT_S=0]

Prints a table and writes benchmarks/results/query.json.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from _harness import RESULTS_DIR, embedded_broker, progress, write_results
from bronze_stream import Supervisors, configure, wait

import k2.query as q
from k2.medallion.interval import Interval
from k2.query import hybrid, sources
from k2.query.live.protocol import ask
from k2.runtime import procs
from k2.runtime.stack import feed_pid_file, start_feed
from k2.streams.state import StreamPaths, read_json

EXCHANGES = ("binance", "kraken")
RATES = {"binance": 10_000, "kraken": 500}


def run_batch(settings, start: dt.datetime, end: dt.datetime) -> dict:
    from k2.medallion.job import run
    from k2.spark import build_spark_session

    spark = build_spark_session(settings, "k2-bench-query-batch")
    started = time.monotonic()
    try:
        for exchange in EXCHANGES:
            for layer in ("silver", "gold"):
                run(spark, settings, layer, Interval(exchange, start, end), gate=lambda *_: {}, catch_up=True)
    finally:
        spark.stop()
    return {"seconds": round(time.monotonic() - started, 1), "ingested_until": end.isoformat()}


def stats(seconds: list[float]) -> dict:
    ms = np.array(seconds) * 1000
    return {"p50_ms": round(float(np.percentile(ms, 50)), 1), "p99_ms": round(float(np.percentile(ms, 99)), 1)}


def _ms(seconds: list[float]) -> list[float]:
    return [round(s * 1000, 1) for s in seconds]


def minor_faults(pid: int) -> int:
    """The process's minor page faults so far (/proc/PID/stat): pages it touched for the first time
    since the kernel gave them, each zeroed on the way."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return int(fields[7])  # minflt, the stat file's tenth field


def cases(settings) -> dict:
    """Per query: its paths (the served query, without the server, Iceberg alone) and its target in ms."""

    def window(seconds: int) -> tuple[dt.datetime, dt.datetime]:
        end = dt.datetime.now(dt.UTC)
        return end - dt.timedelta(seconds=seconds), end

    return {
        "trades_60s": (
            {
                "served": lambda: q.trades(["binance"], ["BTCUSDT"], since="60s", settings=settings),
                "no_server": lambda: hybrid.trades(settings, ["binance"], ["BTCUSDT"], *window(60)),
                "iceberg_only": lambda: _iceberg_trades(settings, 60),
            },
            250,
        ),
        "bars_1m_1h": (
            {
                "served": lambda: q.bars("1m", ["binance"], ["BTC-USDT"], since="1h", settings=settings),
                "no_server": lambda: hybrid.bars(settings, "1m", ["binance"], ["BTC-USDT"], *window(3600)),
                "iceberg_only": lambda: _iceberg_bars(settings),
            },
            1000,
        ),
    }


@dataclass
class Timings:
    """One path's queries: their seconds, the server's minor page faults over each (when its pid is
    given), the last one's rows."""

    seconds: list[float] = field(default_factory=list)
    faults: list[int] = field(default_factory=list)
    rows: int = 0

    def time(self, query, server_pid: int | None) -> None:
        before = minor_faults(server_pid) if server_pid else 0
        started = time.perf_counter()
        self.rows = query().num_rows
        self.seconds.append(time.perf_counter() - started)
        if server_pid:
            self.faults.append(minor_faults(server_pid) - before)

    def report(self) -> dict:
        out = {**stats(self.seconds), "rows": self.rows, "all_ms": _ms(self.seconds)}
        if self.faults:
            out["server_minor_faults"] = {"median": int(np.median(self.faults)), "all": self.faults}
        return out


def paced(query, count: int, gap_s: float, rng: np.random.Generator, server_pid: int) -> dict:
    """``count`` served queries, each after a random pause of up to ``gap_s``: they arrive at any moment
    of the follower's rounds, as a user's do, and none right after a query that held both cores."""
    timings = Timings()
    for _ in range(count):
        time.sleep(rng.uniform(0, gap_s))  # pacing, not waiting for a condition
        timings.time(query, server_pid)
    return timings.report()


def measure(settings, repeats: int, served: int, gap_s: float, rng: np.random.Generator, server_pid: int) -> dict:
    """Per query: ``served`` paced served queries (the target's verdict), then ``repeats`` times each
    path in turn; the served query of each turn follows the query without the server, which held both
    cores for seconds (``served_after_no_server``)."""
    out = {}
    for name, (paths, target_ms) in cases(settings).items():
        before = server_status(settings)["answered"]
        out[name] = {"target_ms": target_ms, "served": paced(paths["served"], served, gap_s, rng, server_pid)}
        turns = {kind: Timings() for kind in paths}
        for _ in range(repeats):
            for kind, fn in paths.items():
                turns[kind].time(fn, server_pid if kind == "served" else None)
        after = server_status(settings)["answered"]
        out[name]["served_after_no_server"] = turns.pop("served").report()
        out[name] |= {kind: timings.report() for kind, timings in turns.items()}
        # how the server answered: from its store (live) or judging at query time (local)
        out[name]["server_answers"] = {k: after[k] - before[k] for k in after}  # each one's steps: server_steps
        out[name]["met"] = out[name]["served"]["p99_ms"] <= target_ms
        progress(f"{name}: {out[name]}")
        write_results("query", {"partial": True, **out})  # kept if a later case does not finish
    return out


def start_server(settings, log_path: Path, extra: dict[str, str]) -> subprocess.Popen:
    """``k2 query serve`` in a process of its own, as `k2 up` starts it, with the settings ``extra``
    (``K2_*`` variables) besides the benchmark's; returned once it has caught up."""
    log = log_path.open("w")
    # its answers' steps, for server_steps, written as they happen
    env = os.environ | extra | {"K2_LOG_LEVEL": "INFO", "K2_LOG_FORMAT": "json", "PYTHONUNBUFFERED": "1"}
    # in a session (and so a CPU scheduling group) of its own, as `k2 up` starts it (k2.runtime.procs)
    command = [sys.executable, "-m", "k2.cli", "query", "serve"]
    server = subprocess.Popen(command, stdout=log, stderr=log, env=env, start_new_session=True)
    wait(
        lambda: server.poll() is None and all(f["caught_up"] for f in server_status(settings)["feeds"].values()),
        300,
        "the query server to follow both topics",
    )
    return server


def stop_server(server: subprocess.Popen) -> None:
    server.terminate()
    server.wait(60)


def server_steps(log_path: Path, sets: dict[str, int]) -> dict:
    """Per operation and set of served queries, the server's own seconds for each answer it logged
    (``query.answered``): reading the request, answering (in all; of which waiting for its store to
    reach Kafka's end offsets and reading the store) and handing the table over. ``sets`` names the
    operation's answers in order: so many of the first set, then of the next; later ones are left out."""
    answered: dict[str, dict[str, list[float]]] = {}
    for event in _json_objects(log_path.read_text()):
        if event.get("event") != "query.answered":
            continue
        steps = {
            "request_s": event["request_s"],
            "seconds": event["seconds"],
            "sent_s": event["sent_s"],
            **event.get("fresh_s", {}),
        }
        for step, value in steps.items():
            answered.setdefault(event["op"], {}).setdefault(step, []).append(value)
    out: dict[str, dict] = {}
    for op, steps in answered.items():
        at = 0
        for name, count in sets.items():
            out.setdefault(op, {})[name] = {
                step: {**stats(v[at : at + count]), "all_ms": _ms(v[at : at + count])}
                for step, v in steps.items()
                if v[at : at + count]
            }
            at += count
    return out


def outside_server(served_ms: list[float], steps: dict) -> dict | None:
    """Each served query's time less the server's handler (reading the request, answering, handing the
    table over): connecting and the handler thread's start, the request's and the answer's way through
    the socket, mapping the table. ``steps``: the same queries' (``server_steps``); None when the
    server logged fewer."""
    if len(steps.get("seconds", {}).get("all_ms", [])) < len(served_ms):
        return None
    handler = [sum(steps[s]["all_ms"][i] for s in ("request_s", "seconds", "sent_s")) for i in range(len(served_ms))]
    outside = [(client - server) / 1000 for client, server in zip(served_ms, handler, strict=True)]
    return {**stats(outside), "all_ms": _ms(outside)}


def _json_objects(text: str):
    """The JSON objects in a log, also where two threads' lines ran together on one line."""
    decoder = json.JSONDecoder()
    for line in text.splitlines():
        at = line.find("{")
        while at != -1:
            try:
                event, end = decoder.raw_decode(line, at)
            except ValueError:
                at = line.find("{", at + 1)
                continue
            if isinstance(event, dict):
                yield event
            at = line.find("{", end)


def cpu_share(process: subprocess.Popen) -> float:
    """The server's CPU seconds per wall second since it started (1.0: one core throughout)."""
    import psutil

    proc = psutil.Process(process.pid)
    times = proc.cpu_times()
    return round((times.user + times.system) / (time.time() - proc.create_time()), 3)


def server_status(settings) -> dict:
    answer = ask(settings, {"op": "status"})
    return answer[1] if answer else {"feeds": {"none": {"caught_up": False}}, "answered": {}}


def _iceberg_trades(settings, seconds: int):
    end = dt.datetime.now(dt.UTC)
    return sources.silver_trades(settings, ["binance"], ["BTCUSDT"], end - dt.timedelta(seconds=seconds), end)


def _iceberg_bars(settings):
    end = dt.datetime.now(dt.UTC)
    return sources.gold_bars(settings, "1m", ["binance"], ["BTC-USDT"], end - dt.timedelta(hours=1), end)


def breakdown(settings) -> dict:
    """Where one trades_60s query spends its time, and how many records each source gave."""
    from k2.query.hybrid import fresh_trades

    end = dt.datetime.now(dt.UTC)
    started = time.perf_counter()
    silver = _iceberg_trades(settings, 60)
    silver_s = time.perf_counter() - started
    fresh = fresh_trades(settings, "binance", end - dt.timedelta(seconds=60), end, ["BTCUSDT"])
    return {
        "seconds": {"silver": round(silver_s, 3), **fresh.seconds},
        "rows": {"silver": silver.num_rows, "bronze": fresh.bronze_rows, "kafka": fresh.kafka_rows},
        "candidates_judged": fresh.judged,
        "fresh_trades": fresh.trades.num_rows,
    }


def bars_breakdown(settings) -> dict:
    """How much of one bars_1m_1h query is the fresh trades of its hour (the rest: Silver, Gold and the bars)."""
    from k2.query.hybrid import fresh_trades

    end = dt.datetime.now(dt.UTC)
    started = time.perf_counter()
    fresh = fresh_trades(settings, "binance", end - dt.timedelta(hours=1), end, ["BTC-USDT"])
    fresh_s = time.perf_counter() - started
    started = time.perf_counter()
    q.bars("1m", ["binance"], ["BTC-USDT"], since="1h", settings=settings)
    return {
        "fresh_seconds": round(fresh_s, 3),
        "fresh_steps": fresh.seconds,
        "whole_query_seconds": round(time.perf_counter() - started, 3),
        "rows": {"bronze": fresh.bronze_rows, "kafka": fresh.kafka_rows},
        "candidates_judged": fresh.judged,
        "fresh_trades": fresh.trades.num_rows,
    }


def served_run(settings, extra: dict[str, str], args, rng: np.random.Generator) -> dict:
    """A server started with the settings ``extra``, asked each query's paced served queries only."""
    log_path = RESULTS_DIR / f"query-server-{'-'.join(f'{k}={v}' for k, v in extra.items()) or 'defaults'}.log"
    server = start_server(settings, log_path, extra)
    try:
        # a server that has just caught up has the records that came meanwhile still to judge: its first
        # answer waits for them (seconds), as one does after `k2 up`; reported apart
        queries = cases(settings)
        started = time.perf_counter()
        queries["trades_60s"][0]["served"]()
        out: dict = {"settings": extra, "first_trades_after_start_ms": _ms([time.perf_counter() - started])[0]}
        for name, (paths, target_ms) in queries.items():
            out[name] = paced(paths["served"], args.served, args.gap_s, rng, server.pid)
            out[name]["met"] = out[name]["p99_ms"] <= target_ms
            progress(f"{extra or 'defaults'}, {name}: p50/p99 {out[name]['p50_ms']}/{out[name]['p99_ms']} ms")
        out["server"] = server_status(settings) | {"cpu_share": cpu_share(server)}
    finally:
        stop_server(server)
    out["server_steps"] = {
        "trades": server_steps(log_path, {"first": 1, "served": args.served})["trades"],
        "bars": server_steps(log_path, {"served": args.served})["bars"],
    }
    for name, op in (("trades_60s", "trades"), ("bars_1m_1h", "bars")):
        out[name]["outside_server"] = outside_server(out[name]["all_ms"], out["server_steps"][op]["served"])
    return out


def settings_set(text: str) -> dict[str, str]:
    """``K2_A=1,K2_B=2``: settings of the README's table, for one server."""
    out = {}
    for item in text.split(","):
        key, sep, value = item.partition("=")
        if not (sep and key.startswith("K2_")):
            raise argparse.ArgumentTypeError(f"{item!r} is not K2_NAME=VALUE (a setting of the README's table)")
        out[key] = value
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--fill-s", type=float, default=60, help="seconds of data before the batch")
    parser.add_argument("--after-s", type=float, default=30, help="seconds of data after the batch")
    parser.add_argument("--repeats", type=int, default=5, help="turns of the three paths, each query")
    parser.add_argument("--served", type=int, default=30, help="paced served queries, each query")
    parser.add_argument("--gap-s", type=float, default=2.0, help="the longest random pause before a paced query")
    parser.add_argument(
        "--compare",
        type=settings_set,
        action="append",
        default=[],
        metavar="K2_NAME=VALUE[,...]",
        help="after the measurement, the paced served queries again of a server started with these settings "
        "(repeatable: one server each), then of one with the defaults",
    )
    parser.add_argument("--seed", type=int, default=7, help="of the pauses")
    args = parser.parse_args()
    rng = np.random.default_rng(args.seed)
    with embedded_broker() as base:
        settings = configure(base, Path(base.home) / "query", K2_EXCHANGES="binance,kraken")
        supervisors = Supervisors(settings, list(EXCHANGES))
        paths = {ex: StreamPaths.of(settings, ex) for ex in EXCHANGES}
        server = None
        log_path = RESULTS_DIR / "query-server.log"  # for a look at its answers
        RESULTS_DIR.mkdir(parents=True, exist_ok=True)
        try:
            wait(
                lambda: all((read_json(p.status) or {}).get("state") == "running" for p in paths.values()),
                300,
                "both streams to run",
            )
            server = start_server(settings, log_path, {})
            started = dt.datetime.now(dt.UTC) - dt.timedelta(minutes=1)
            # the feeds in processes of their own, as `k2 up` runs them: in this process their threads
            # would hold the GIL that reading an answer from the socket needs
            for exchange, rate in RATES.items():
                start_feed(settings, exchange, rate=rate)
            filled = time.monotonic() + args.fill_s
            wait(lambda: time.monotonic() > filled, args.fill_s + 10, "the fill")
            progress("batch: Silver + Gold over everything ingested so far")
            batch = run_batch(settings, started, dt.datetime.now(dt.UTC))
            after = time.monotonic() + args.after_s
            wait(lambda: time.monotonic() > after, args.after_s + 10, "data after the batch")
            lag = {ex: sum(sources.kafka_tail(settings, ex).ends.values()) for ex in EXCHANGES}
            progress(f"measuring ({args.served} paced served queries and {args.repeats} turns each)")
            results = measure(settings, args.repeats, args.served, args.gap_s, rng, server.pid)
            results["trades_60s"]["no_server_steps"] = breakdown(settings)
            results["bars_1m_1h"]["no_server_steps"] = bars_breakdown(settings)
            results["server"] = server_status(settings) | {"cpu_share": cpu_share(server)}
            stop_server(server)  # its log complete: the last answers' lines may follow their answers
            server = None
            sets = {"served": args.served, "served_after_no_server": args.repeats}
            results["server_steps"] = server_steps(log_path, sets)
            for name, op in (("trades_60s", "trades"), ("bars_1m_1h", "bars")):
                for kind in sets:
                    steps = results["server_steps"].get(op, {}).get(kind, {})
                    results[name][kind]["outside_server"] = outside_server(results[name][kind]["all_ms"], steps)
            if args.compare:
                results["compared"] = [served_run(settings, extra, args, rng) for extra in [*args.compare, {}]]
        finally:
            if server is not None:
                stop_server(server)
            procs.stop_all([feed_pid_file(settings, exchange) for exchange in RATES])
            supervisors.shutdown()
    results |= {
        "rates_msg_s": RATES,
        "fill_s": args.fill_s,
        "after_batch_s": args.after_s,
        "batch": batch,
        "kafka_end_offsets_total": lag,
        "repeats": args.repeats,
        "served_paced": {"count": args.served, "longest_pause_s": args.gap_s, "seed": args.seed},
    }
    path = write_results("query", results)
    report(results)
    print(f"results: {path}")


def report(results: dict) -> None:
    print(f"{'query':<12} {'path':<23} {'p50 ms':>9} {'p99 ms':>9} {'rows':>8}  target")
    for name in ("trades_60s", "bars_1m_1h"):
        for kind in ("served", "served_after_no_server", "no_server", "iceberg_only"):
            r = results[name][kind]
            verdict = f"<= {results[name]['target_ms']} ms: {'met' if results[name]['met'] else 'NOT met'}"
            target = verdict if kind == "served" else ""
            print(f"{name:<12} {kind:<23} {r['p50_ms']:>9} {r['p99_ms']:>9} {r['rows']:>8}  {target}")
    for op, sets in results["server_steps"].items():
        for kind, steps in sets.items():
            figures = (f"{step} p50/p99 {v['p50_ms']}/{v['p99_ms']} ms" for step, v in steps.items())
            print(f"server, {op}, {kind}: " + ", ".join(figures))
    for name in ("trades_60s", "bars_1m_1h"):
        outside = results[name]["served"]["outside_server"]
        if outside:
            print(f"{name} served, outside the server's handler: p50/p99 {outside['p50_ms']}/{outside['p99_ms']} ms")
    for run in results.get("compared", []):
        figures = (f"{n} p50/p99 {run[n]['p50_ms']}/{run[n]['p99_ms']} ms" for n in ("trades_60s", "bars_1m_1h"))
        steps = run["server_steps"]["trades"]["served"]
        print(
            f"server with {run['settings'] or 'the defaults'}: " + ", ".join(figures)
            + f"; trades waiting for the round p50 {steps['reach_end']['p50_ms']} ms, cpu {run['server']['cpu_share']}"
            + f"; its first trades answer after its start {run['first_trades_after_start_ms']} ms"
        )  # fmt: skip


if __name__ == "__main__":
    main()
