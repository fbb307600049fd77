"""The stack as a whole: the up, down, status, monitor, thresholds and settings commands."""

from __future__ import annotations

import argparse
from pathlib import Path

from k2.cli.registry import Add
from k2.cli.table import print_table
from k2.settings import Settings


def cmd_up(settings: Settings, args: argparse.Namespace) -> int:
    from k2.runtime.stack import bring_up

    bring_up(settings, feeds=not args.no_feeds, wait_for_streams=not args.no_wait, first_batch=not args.no_batch)
    print()
    return cmd_status(settings, args)


def cmd_down(settings: Settings, args: argparse.Namespace) -> int:
    from k2.runtime.stack import bring_down

    print_table(("component", "result"), bring_down(settings))
    return 0


def cmd_status(settings: Settings, args: argparse.Namespace) -> int:
    from k2.monitoring.report import NO_MEASUREMENT, STREAM_HEADERS, stream_rows
    from k2.status import stack_status

    print_table(("component", "state", "where", "details"), stack_status(settings))
    print()
    try:
        rows = stream_rows(settings)
    except Exception as exc:  # monitoring's figures are in the catalog's database, which may be down
        first = (settings.redact(str(exc)).strip().splitlines() or [type(exc).__name__])[0]
        print(f"streams: monitoring's latest figures are unreachable ({first[:160]})")
        return 0
    if rows:
        print_table(STREAM_HEADERS, rows)
    else:
        print(f"streams: {NO_MEASUREMENT}")
    if getattr(args, "plot", None) is not None:
        from k2.monitoring.report import write_chart

        chart = Path(args.plot).resolve() if args.plot else settings.monitoring_dir / "status.html"
        points = write_chart(settings, chart)
        print(f"\nchart of latency and lag over the last hour ({points} measurements): {chart.as_uri()}")
    return 0


def cmd_monitor(settings: Settings, args: argparse.Namespace) -> int:
    from k2.monitoring.monitor import run_monitor
    from k2.monitoring.report import STREAM_HEADERS, stream_rows
    from k2.monitoring.thresholds import configured_thresholds

    result = run_monitor(settings, configured_thresholds(settings))
    print_table(STREAM_HEADERS, stream_rows(settings))
    for alert in result.alerts:
        print(f"alert: {alert.text} (delivery: {alert.delivery or 'log only'})")
    return 0


def cmd_thresholds(settings: Settings, args: argparse.Namespace) -> int:
    from k2.monitoring.thresholds import DEFAULTS, configured_thresholds

    thresholds = configured_thresholds(settings)
    print_table(
        ("exchange", "metric", "warning above", "critical above", "meaning"),
        [
            (
                ex,
                metric,
                "off" if t.warning is None else f"{t.warning:.10g}",
                "off" if t.critical is None else f"{t.critical:.10g}",
                DEFAULTS[metric][1],
            )
            for ex, metrics in thresholds.per_exchange.items()
            for metric, t in metrics.items()
        ],
    )
    print(
        "\nsources: defaults, K2_MONITOR_THRESHOLDS_FILE, then the Airflow Variable k2_alert_thresholds "
        "(same JSON, read by the monitoring DAG)"
    )
    return 0


def cmd_settings(settings: Settings, args: argparse.Namespace) -> int:
    print_table(("variable", "value", "source", "meaning"), settings.describe())
    return 0


def register(add: Add) -> None:
    """Declares these commands and their arguments."""
    p = add(
        "up",
        cmd_up,
        "Start everything: broker, topics, tables, Airflow, simulated feeds, supervised "
        "Bronze streams; then show status.",
    )
    p.add_argument("--no-feeds", action="store_true", help="do not start the simulated feeds")
    p.add_argument(
        "--no-wait", action="store_true", help="do not wait for the streams' first batches (nor run the first batch)"
    )
    p.add_argument(
        "--no-batch",
        action="store_true",
        help="do not run and wait for a first k2_medallion run (the hourly schedule runs it)",
    )
    add("down", cmd_down, "Stop everything `k2 up` started (data is kept).")
    p = add("status", cmd_status, "Show what runs where, and each stream's latest monitoring figures.")
    p.add_argument(
        "--plot",
        nargs="?",
        const="",
        default=None,
        metavar="HTML",
        help="also chart latency and lag over the last hour (default file: K2_HOME/monitoring/status.html)",
    )
    add("monitor", cmd_monitor, "Measure the streams now, as the k2_monitoring DAG does (alerts included).")
    add("thresholds", cmd_thresholds, "Show the alert thresholds in force, validating their sources.")
    add("settings", cmd_settings, "Show every K2_* setting with its value and meaning.")
