"""Silver's part of a query at the live edge: the last 60 s of BTCUSDT, past every trade Silver holds.

A narrow setting (no broker, no streams): a lake of its own whose Silver holds --commits of today's
commits per exchange (an hourly batch adds one an hour), each older than the window. Compared in
the same run, alternating:

- planned: the table loaded and the scan planned at every query (what ``silver_trades`` did before
  it read Silver's latest event time once per snapshot);
- silver_trades: as queries call it now (``k2.query.sources.latest_event_time`` decides that no
  scan is needed, and the table is parsed once per metadata file: ``k2.lake.current``);
- load_table and current_table: the table alone, loaded by the catalog (its metadata JSON parsed)
  and by ``k2.lake.current.CurrentTables`` (one row of the catalog read while it is unchanged).

    .venv/bin/python benchmarks/silver_edge.py [--commits 1 24] [--calls 40]

Prints the medians and writes benchmarks/results/silver_edge.json.
"""

from __future__ import annotations

import argparse
import datetime as dt
import tempfile
from decimal import Decimal
from pathlib import Path

import pyarrow as pa
from _harness import median, progress, timed, write_results

from k2.lake.catalog import load_catalog
from k2.lake.current import CurrentTables
from k2.lake.tables import SILVER_TRADES, all_tables, ensure_tables
from k2.query import hybrid, sources
from k2.settings import Settings

ROWS_PER_COMMIT = 2_000  # per exchange


def fill(settings: Settings, commits: int, now: dt.datetime) -> None:
    """``commits`` appends of both exchanges' trades, spread over today before the window."""
    table = load_catalog(settings.lake).load_table(SILVER_TRADES.identifier)
    midnight = now.replace(hour=0, minute=0, second=0, microsecond=0)
    first = max(now - dt.timedelta(hours=commits), midnight)
    one = Decimal("1.5")
    for commit in range(commits):
        at = first + (now - first - dt.timedelta(minutes=5)) * commit / commits
        rows = [
            {"exchange": exchange, "symbol": "BTC-USDT", "exchange_symbol": "BTCUSDT",
             "trade_id": str(commit * ROWS_PER_COMMIT + n), "event_time": at + dt.timedelta(milliseconds=n),
             "price": one, "quantity": one, "quote_amount": one, "taker_side": "buy", "kafka_topic": "bench",
             "kafka_partition": 0, "kafka_offset": n, "kafka_timestamp": at, "bronze_ingested_at": at,
             "processed_at": at}
            for exchange in ("binance", "kraken")
            for n in range(ROWS_PER_COMMIT)
        ]  # fmt: skip
        table.append(pa.Table.from_pylist(rows, schema=table.schema().as_arrow()))


def measure(commits: int, calls: int) -> dict:
    from pyiceberg.expressions import And, GreaterThanOrEqual, In, LessThan, Or

    with tempfile.TemporaryDirectory(prefix="k2-bench-") as home:
        settings = Settings.from_env({}, home=Path(home))
        ensure_tables(load_catalog(settings.lake), all_tables(settings))
        now = dt.datetime.now(dt.UTC)
        fill(settings, commits, now)
        start, end, columns = now - dt.timedelta(seconds=60), now, hybrid.TRADE_COLUMNS
        where = And(
            And(In("exchange", ["binance"]), GreaterThanOrEqual("event_time", start.isoformat())),
            And(
                LessThan("event_time", end.isoformat()),
                Or(In("symbol", ["BTCUSDT"]), In("exchange_symbol", ["BTCUSDT"])),
            ),
        )
        catalog = load_catalog(settings.lake)
        current = CurrentTables(catalog)
        ways = {
            "planned": lambda: (
                catalog.load_table(SILVER_TRADES.identifier).scan(row_filter=where, selected_fields=columns).to_arrow()
            ),
            "silver_trades": lambda: sources.silver_trades(
                settings, ["binance"], ["BTCUSDT"], start, end, None, columns
            ),
            "load_table": lambda: catalog.load_table(SILVER_TRADES.identifier),
            "current_table": lambda: current.load(SILVER_TRADES.identifier),
        }
        answers = {name: way() for name, way in ways.items()}
        assert all(answers[name].num_rows == 0 for name in ("planned", "silver_trades")), (
            "the window must be past Silver's trades"
        )
        assert answers["planned"].schema == answers["silver_trades"].schema
        seconds: dict[str, list[float]] = {name: [] for name in ways}
        for _ in range(calls):
            for name, way in ways.items():
                seconds[name].append(timed(way))
    return {name: round(median(values) * 1000, 2) for name, values in seconds.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--commits", type=int, nargs="+", default=[1, 24], help="Silver's commits of today")
    parser.add_argument("--calls", type=int, default=40, help="calls of each way, alternating")
    args = parser.parse_args()
    results = {"calls": args.calls, "rows_per_commit": ROWS_PER_COMMIT, "median_ms": {}}
    for commits in args.commits:
        progress(f"Silver with {commits} commits of today")
        results["median_ms"][str(commits)] = measure(commits, args.calls)
    path = write_results("silver_edge", results)
    ways = ("planned", "silver_trades", "load_table", "current_table")
    print(f"{'commits':>8} " + " ".join(f"{way + ' ms':>17}" for way in ways))
    for commits, medians in results["median_ms"].items():
        print(f"{commits:>8} " + " ".join(f"{medians[way]:>17}" for way in ways))
    print(f"results: {path}")


if __name__ == "__main__":
    main()
