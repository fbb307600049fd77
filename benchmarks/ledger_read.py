"""Reading the medallion ledger's coverage of one layer and exchange, as a query server does every 5 s
per exchange and at every bars query, after --hours of hourly runs (each records a piece per layer
and exchange: four appends, one manifest each until the daily maintenance merges them).

A narrow setting (no broker, no streams): two lakes of their own, the ledger of one with the
properties every table has (before ``k2.lake.appends``), of the other with its own. Compared in the
same run, alternating:

- before: the plain ledger loaded and scanned at every read (what ``ledger.covered`` did before it
  read the ledger once per version);
- scanned: K2's ledger (its manifests merged) loaded and scanned: what the first read of each of its
  versions costs now;
- covered: ``k2.medallion.ledger.covered`` as callers use it now.

    .venv/bin/python benchmarks/ledger_read.py [--hours 1 24 96] [--calls 20]

Prints the medians and writes benchmarks/results/ledger_read.json.
"""

from __future__ import annotations

import argparse
import datetime as dt
import tempfile
from dataclasses import replace
from pathlib import Path

from _harness import median, progress, timed, write_results

from k2.lake.catalog import load_catalog
from k2.lake.tables import MEDALLION_LEDGER, TABLE_PROPERTIES, TableSpec, ensure_tables
from k2.medallion import ledger
from k2.settings import Settings

START = dt.datetime(2026, 12, 1, tzinfo=dt.UTC)
PIECES = [(layer, exchange) for layer in ("silver", "gold") for exchange in ("binance", "kraken")]


def ledger_of(home: str, spec: TableSpec, hours: int) -> Settings:
    """A lake whose ledger (created from ``spec``) holds ``hours`` of hourly runs."""
    settings = Settings.from_env({}, home=Path(home))
    ensure_tables(load_catalog(settings.lake), [spec])
    for hour in range(hours):
        start = START + dt.timedelta(hours=hour)
        for layer, exchange in PIECES:
            ledger.record(
                settings.lake, ledger.LedgerEntry(layer, exchange, start, start + dt.timedelta(hours=1), False)
            )
    return settings


def scanned(settings: Settings) -> list:
    from pyiceberg.expressions import And, EqualTo

    table = load_catalog(settings.lake).load_table(MEDALLION_LEDGER.identifier)
    rows = table.scan(row_filter=And(EqualTo("layer", "gold"), EqualTo("exchange", "binance"))).to_arrow()
    return [(row["range_start"], row["range_end"]) for row in rows.to_pylist()]


def measure(hours: int, calls: int) -> dict:
    plain = replace(MEDALLION_LEDGER, properties=dict(TABLE_PROPERTIES))
    with tempfile.TemporaryDirectory(prefix="k2-bench-") as a, tempfile.TemporaryDirectory(prefix="k2-bench-") as b:
        before, now = ledger_of(a, plain, hours), ledger_of(b, MEDALLION_LEDGER, hours)
        ways = {
            "before": lambda: scanned(before),
            "scanned": lambda: scanned(now),
            "covered": lambda: ledger.covered(now.lake, "gold", "binance"),
        }
        answers = {name: sorted(way()) for name, way in ways.items()}
        assert answers["before"] == answers["scanned"] == answers["covered"] and len(answers["covered"]) == hours
        seconds: dict[str, list[float]] = {name: [] for name in ways}
        for _ in range(calls):
            for name, way in ways.items():
                seconds[name].append(timed(way))
        tables = {
            name: load_catalog(s.lake).load_table(MEDALLION_LEDGER.identifier)
            for name, s in [("before", before), ("now", now)]
        }
        manifests = {name: len(t.current_snapshot().manifests(t.io)) for name, t in tables.items()}
    return {name: round(median(values) * 1000, 2) for name, values in seconds.items()} | {"manifests": manifests}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--hours", type=int, nargs="+", default=[1, 24, 96], help="hourly runs recorded")
    parser.add_argument("--calls", type=int, default=20, help="reads of each way, alternating")
    args = parser.parse_args()
    results = {"calls": args.calls, "appends_per_hour": len(PIECES), "median_ms": {}}
    for hours in args.hours:
        progress(f"a ledger of {hours} hourly runs")
        results["median_ms"][str(hours)] = measure(hours, args.calls)
    path = write_results("ledger_read", results)
    print(f"{'hours':>6} {'appends':>8} {'before ms':>10} {'scanned ms':>11} {'covered ms':>11}")
    for hours, m in results["median_ms"].items():
        print(f"{hours:>6} {int(hours) * len(PIECES):>8} {m['before']:>10} {m['scanned']:>11} {m['covered']:>11}")
    print(f"results: {path}")


if __name__ == "__main__":
    main()
