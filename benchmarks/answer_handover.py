"""Handing a served trades answer over: the query server writes the table into an anonymous memory
file (``k2.query.live.protocol.table_file``) whose descriptor crosses the socket; the client maps it.

A narrow setting (one process, no broker): a table shaped like the benchmark's served answer (the
last 60 s of BTCUSDT at 10,000 msg/s: 245,000 trades in TRADES_SCHEMA, one chunk), written --calls
times each way, alternating:

- python_file: Arrow's stream writer on a Python file object over the memory file (how
  ``table_file`` wrote before): Arrow calls back into Python, taking the GIL, for each buffer;
- arrow_file: ``table_file`` now: Arrow's own file opened on the memory file (/proc/self/fd), the
  write wholly without the GIL;

each idle and beside a thread running Python code, as the server's judging threads do (turning
Kafka messages into Arrow holds the GIL for long stretches). The mapped table is checked equal to
the original once per way.

    .venv/bin/python benchmarks/answer_handover.py [--rows 245000] [--calls 15]

Prints the medians and slowest times and writes benchmarks/results/answer_handover.json.
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import threading
import time
from decimal import Decimal

import pyarrow as pa
from _harness import median, progress, write_results

from k2.query.hybrid import TRADES_SCHEMA
from k2.query.live.protocol import mapped_table, table_file


def answer(rows: int) -> pa.Table:
    start = dt.datetime(2026, 12, 7, 12, tzinfo=dt.UTC)
    times = [start + dt.timedelta(microseconds=i * 245) for i in range(rows)]
    price = Decimal("97123.450000000000000000")
    columns = {
        "exchange": ["binance"] * rows,
        "symbol": ["BTC-USDT"] * rows,
        "exchange_symbol": ["BTCUSDT"] * rows,
        "trade_id": [str(4_000_000_000 + i) for i in range(rows)],
        "event_time": times,
        "price": [price] * rows,
        "quantity": [Decimal("0.012000000000000000")] * rows,
        "quote_amount": [Decimal("1165.481400000000000000")] * rows,
        "taker_side": ["buy" if i % 2 else "sell" for i in range(rows)],
        "kafka_topic": ["market.binance.trades.raw"] * rows,
        "kafka_partition": [i % 3 for i in range(rows)],
        "kafka_offset": list(range(rows)),
        "kafka_timestamp": times,
        "bronze_ingested_at": [None] * rows,
    }
    return pa.table(columns, schema=TRADES_SCHEMA).combine_chunks()


def python_file(table: pa.Table) -> int:
    """``table_file`` before: the stream written through a Python file object."""
    fd = os.memfd_create("k2-bench-answer", os.MFD_CLOEXEC)
    with open(fd, "wb", closefd=False) as file, pa.ipc.new_stream(file, table.schema) as writer:
        writer.write_table(table)
    return fd


def spin(stop: threading.Event) -> None:
    """Python code holding the GIL between the interpreter's switches, as a judging round's Python does."""
    while not stop.is_set():
        sum(i * i for i in range(10_000))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=245_000)
    parser.add_argument("--calls", type=int, default=15)
    args = parser.parse_args()
    table = answer(args.rows)
    ways = {"python_file": python_file, "arrow_file": table_file}
    for name, write in ways.items():
        fd = write(table)
        try:
            assert mapped_table(fd).equals(table), f"{name}: the mapped table differs"
        finally:
            os.close(fd)
    results: dict[str, dict] = {}
    for setting in ("idle", "beside_python_thread"):
        stop = threading.Event()
        spinner = threading.Thread(target=spin, args=(stop,), daemon=True)
        if setting != "idle":
            spinner.start()
        times: dict[str, list[float]] = {name: [] for name in ways}
        try:
            for _ in range(args.calls):
                for name, write in ways.items():
                    clock = time.perf_counter()
                    fd = write(table)
                    times[name].append(time.perf_counter() - clock)
                    os.close(fd)
        finally:
            stop.set()
            if spinner.is_alive():
                spinner.join()
        results[setting] = {
            name: {"median_ms": round(median(t) * 1000, 2), "slowest_ms": round(max(t) * 1000, 2)}
            for name, t in times.items()
        }
        progress(f"{setting}: {results[setting]}")
    megabytes = round(table.nbytes / 1e6, 1)
    path = write_results(
        "answer_handover", {"rows": args.rows, "table_mb": megabytes, "calls": args.calls, "ms": results}
    )
    print(f"{args.rows:,} trades ({megabytes} MB), {args.calls} writes each, alternating")
    print(f"{'setting':<22} {'way':<12} {'median ms':>10} {'slowest ms':>11}")
    for setting, ways_ms in results.items():
        for name, figures in ways_ms.items():
            print(f"{setting:<22} {name:<12} {figures['median_ms']:>10} {figures['slowest_ms']:>11}")
    print(f"results: {path}")


if __name__ == "__main__":
    main()
