"""Monitoring's history table over a day: an append a minute to ``ops.stream_metrics`` (two rows, one
per exchange) and the K2 view's read of its last hour, as the table grows between two daily
maintenance runs.

A narrow setting (no broker, no streams): a lake of its own with two copies of the table, appended
to alternately with the same rows:

- plain: the properties every table has, appended with pyiceberg's ``append`` (before
  ``k2.lake.appends``);
- bounded: ``ops.stream_metrics``'s own properties, appended with ``k2.lake.appends.append``
  (keeping its newest 60 snapshots: an hour's at one append a minute).

At each checkpoint (--checkpoints, in appends: minutes of monitoring) it times the next
--samples appends of each and a read of the last hour through a new catalog, as a monitoring task
or the K2 view does.

    .venv/bin/python benchmarks/ops_appends.py [--checkpoints 60 360 720] [--samples 10]

Prints the medians and writes benchmarks/results/ops_appends.json.
"""

from __future__ import annotations

import argparse
import datetime as dt
import tempfile
from dataclasses import replace
from pathlib import Path

import pyarrow as pa
from _harness import median, progress, timed, write_results

from k2.lake import appends
from k2.lake.catalog import load_catalog
from k2.lake.tables import STREAM_METRICS, TABLE_PROPERTIES, ensure_tables
from k2.settings import Settings

# the benchmark appends many times a minute: the bounded copy keeps its newest 60 snapshots, which
# is what an hour's age keeps at monitoring's one append a minute
HOUR_OF_APPENDS = {appends.MAX_AGE: "0", appends.MIN_KEPT: "60"}
WAYS = {
    "plain": replace(STREAM_METRICS, name="metrics_plain", properties=dict(TABLE_PROPERTIES)),
    "bounded": replace(STREAM_METRICS, properties={**STREAM_METRICS.properties, **HOUR_OF_APPENDS}),
}


def minute_rows(schema: pa.Schema, at: dt.datetime) -> pa.Table:
    """One monitoring run's rows: a required column gets a zero or a state, the others stay empty."""

    def value(f: pa.Field):
        if f.nullable:
            return None
        return 0 if pa.types.is_integer(f.type) else "running"

    rows = [{f.name: value(f) for f in schema} | {"measured_at": at, "exchange": ex} for ex in ("binance", "kraken")]
    return pa.Table.from_pylist(rows, schema=schema)


def main() -> None:
    from pyiceberg.expressions import GreaterThanOrEqual

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--checkpoints", type=int, nargs="+", default=[60, 360, 720], help="appends made")
    parser.add_argument("--samples", type=int, default=10, help="appends and reads timed at each checkpoint")
    args = parser.parse_args()
    results: dict = {"samples": args.samples, "checkpoints": {}}
    with tempfile.TemporaryDirectory(prefix="k2-bench-") as home:
        settings = Settings.from_env({}, home=Path(home))
        catalog = load_catalog(settings.lake)
        ensure_tables(catalog, list(WAYS.values()))
        schema = catalog.load_table(STREAM_METRICS.identifier).schema().as_arrow()
        start = dt.datetime.now(dt.UTC) - dt.timedelta(minutes=max(args.checkpoints) + args.samples)
        made = 0

        def append(name: str, at: dt.datetime) -> None:
            table = load_catalog(settings.lake).load_table(WAYS[name].identifier)  # a task's own catalog
            if name == "plain":
                table.append(minute_rows(schema, at))
            else:
                appends.append(table, minute_rows(schema, at))

        def read_hour(name: str) -> int:
            since = (start + dt.timedelta(minutes=made - 60)).isoformat()
            table = load_catalog(settings.lake).load_table(WAYS[name].identifier)
            return table.scan(row_filter=GreaterThanOrEqual("measured_at", since)).to_arrow().num_rows

        for checkpoint in sorted(args.checkpoints):
            progress(f"{checkpoint} appends (minutes of monitoring)")
            for minute in range(made, checkpoint):
                for name in WAYS:
                    append(name, start + dt.timedelta(minutes=minute))
            made = checkpoint
            seconds: dict[str, dict[str, list[float]]] = {name: {"append": [], "read": []} for name in WAYS}
            for _ in range(args.samples):
                at = start + dt.timedelta(minutes=made)
                for name in WAYS:
                    seconds[name]["append"].append(timed(lambda n=name, at=at: append(n, at)))
                made += 1
                for name in WAYS:
                    seconds[name]["read"].append(timed(lambda n=name: read_hour(n)))
            assert read_hour("plain") == read_hour("bounded") > 0, "both tables hold the same rows"
            tables = {name: load_catalog(settings.lake).load_table(spec.identifier) for name, spec in WAYS.items()}
            results["checkpoints"][str(checkpoint)] = {
                name: {
                    "append_ms": round(median(seconds[name]["append"]) * 1000, 1),
                    "read_hour_ms": round(median(seconds[name]["read"]) * 1000, 1),
                    "snapshots": len(table.metadata.snapshots),
                    "manifests": len(table.current_snapshot().manifests(table.io)),
                }
                for name, table in tables.items()
            }
    path = write_results("ops_appends", results)
    print(f"{'appends':>8} {'way':>8} {'append ms':>10} {'read 1h ms':>11} {'snapshots':>10} {'manifests':>10}")
    for checkpoint, ways in results["checkpoints"].items():
        for name, m in ways.items():
            print(
                f"{checkpoint:>8} {name:>8} {m['append_ms']:>10} {m['read_hour_ms']:>11} "
                f"{m['snapshots']:>10} {m['manifests']:>10}"
            )
    print(f"results: {path}")


if __name__ == "__main__":
    main()
