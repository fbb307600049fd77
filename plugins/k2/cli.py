"""The ``k2`` command: bring the stack up and down, and operate its parts."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from k2.errors import K2Error
from k2.log import configure_logging, get_logger
from k2.private import private_dir
from k2.settings import Settings, load_settings

if TYPE_CHECKING:
    from datetime import datetime

    from k2.gaps.model import Gap

log = get_logger("k2.cli")


def print_table(headers: Sequence[str], rows: Sequence[Sequence[object]]) -> None:
    cells = [[str(c) for c in headers], *[[str(c) for c in row] for row in rows]]
    widths = [max(len(row[i]) for row in cells) for i in range(len(headers))]
    for n, row in enumerate(cells):
        print("  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip())
        if n == 0:
            print("  ".join("-" * w for w in widths))


# --- commands ------------------------------------------------------------------------------------
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


def cmd_jars(settings: Settings, args: argparse.Namespace) -> int:
    from k2.class_archive import ensure_class_archive
    from k2.jvm import STREAM_LISTENER_MODULE, compiled_jar, ensure_jars, local_fs_jar

    jars = ensure_jars(settings, force=args.force)
    archive = ensure_class_archive(settings)
    print_table(
        ("module", "jars", "directory"),
        [
            ("kafka-broker", len(jars.kafka_broker), settings.jvm.jars_dir / "kafka-broker"),
            ("spark-connectors", len(jars.spark_connectors), settings.jvm.jars_dir / "spark-connectors"),
            ("local-fs", 1 if local_fs_jar(settings.jvm) else 0, settings.jvm.jars_dir / "local-fs"),
            (
                STREAM_LISTENER_MODULE,
                1 if compiled_jar(settings.jvm, STREAM_LISTENER_MODULE) else 0,
                settings.jvm.jars_dir / STREAM_LISTENER_MODULE,
            ),
            ("class-archive", 1 if archive else 0, archive or "not built: see the log above"),
        ],
    )
    return 0


def cmd_system_packages(settings: Settings, args: argparse.Namespace) -> int:
    from k2 import system_packages

    installed = system_packages.ensure()
    print_table(
        ("package", "state", "needed because"),
        [(p.name, "installed now" if p in installed else "present", p.why) for p in system_packages.TEST_PACKAGES],
    )
    return 0


def cmd_kafka(settings: Settings, args: argparse.Namespace) -> int:
    from k2.runtime.broker import LocalKafka, reset_storage

    kafka = LocalKafka(settings)
    if args.action == "start":
        from k2.jvm import ensure_jars

        ensure_jars(settings)
        status = kafka.start()
        print(f"Kafka running: pid {status.pid}, bootstrap {status.bootstrap_servers}, data {status.data_dir}")
    elif args.action == "stop":
        print("Kafka " + ("stopped" if kafka.stop() else "was not running"))
    elif args.action == "status":
        nodes = [node.status() for node in kafka.nodes]
        print_table(
            ("node", "state", "pid", "bootstrap", "data", "log"),
            [
                (
                    node.node,
                    "running" if s.running else "stopped",
                    s.pid or "-",
                    s.bootstrap_servers,
                    s.data_dir,
                    s.log_file,
                )
                for node, s in zip(kafka.nodes, nodes, strict=True)
            ],
        )
        return 0 if all(s.running for s in nodes) else 3
    elif args.action == "reset":
        if not args.yes:
            raise K2Error(
                "`k2 kafka reset` deletes every topic and message in "
                + ", ".join(str(node.data_dir) for node in kafka.nodes),
                "re-run with --yes to confirm.",
            )
        print("deleted " + ", ".join(str(path) for path in reset_storage(settings)))
    elif args.action == "topics":
        from k2.kafka.topics import ensure_topics

        print_table(("topic", "action"), sorted(ensure_topics(settings).items()))
    return 0


def cmd_lake(settings: Settings, args: argparse.Namespace) -> int:
    from k2.lake.catalog import load_catalog
    from k2.lake.tables import all_tables, ensure_tables

    catalog = load_catalog(settings.lake)
    if args.action == "init":
        print_table(("table", "action"), sorted(ensure_tables(catalog, all_tables(settings)).items()))
    elif args.action == "show":
        return show_table(catalog, args.table, args.where, args.limit)
    else:
        rows = []
        for spec in all_tables(settings):
            if catalog.table_exists(spec.identifier):
                table = catalog.load_table(spec.identifier)
                snap = table.current_snapshot()
                rows.append(
                    (
                        spec.identifier,
                        # pyiceberg's Summary.get ignores a default: `or`
                        (snap.summary.get("total-records") or 0) if snap else 0,
                        (snap.summary.get("total-data-files") or 0) if snap else 0,
                        table.location(),
                    )
                )
            else:
                rows.append((spec.identifier, "missing", "-", "run `k2 lake init`"))
        print_table(("table", "rows", "files", "location"), rows)
    return 0


def show_table(catalog, identifier: str | None, where: str | None, limit: int) -> int:
    """Print up to ``limit`` rows of a table, optionally filtered (pyiceberg row filter syntax)."""
    from pyiceberg.exceptions import NoSuchTableError

    if not identifier:
        raise K2Error(
            "`k2 lake show` needs a table",
            "e.g. `k2 lake show gold.ohlcv_1m --where \"symbol = 'BTC-USDT'\"`; `k2 lake tables` lists them.",
        )
    try:
        table = catalog.load_table(identifier)
    except NoSuchTableError as exc:
        raise K2Error(f"no table {identifier}", "`k2 lake tables` lists K2's tables.") from exc
    from pyiceberg.expressions.parser import parse

    try:
        row_filter = parse(where or "true")
    except Exception as exc:  # pyparsing's errors, which pyiceberg does not wrap
        raise K2Error(
            f"cannot read the filter {where!r} (at character {getattr(exc, 'loc', '?')})",
            "use column comparisons such as \"symbol = 'BTC-USDT' and trade_count > 10\".",
        ) from exc
    rows = table.scan(row_filter=row_filter, limit=limit).to_arrow().to_pylist()
    columns = [f.name for f in table.schema().fields]
    print_table(tuple(columns), [tuple(_cell(r[c]) for c in columns) for r in rows])
    return 0


def _cell(value: object) -> str:
    if isinstance(value, bytes):
        text = value[:60].decode("utf-8", "replace")
        return text + ("..." if len(value) > 60 else "")
    return "" if value is None else str(value)


def cmd_feed(settings: Settings, args: argparse.Namespace) -> int:
    from k2.exchanges import get_exchange, resolve_symbols
    from k2.feeds.producer import TradeProducer

    exchange = get_exchange(args.exchange)
    given = [s.strip() for s in args.symbols.split(",") if s.strip()] if args.symbols else None
    symbols = resolve_symbols(settings, exchange, given, simulated=args.mode == "sim")
    if args.mode == "sim":
        from k2.feeds.runner import run_simulated_feed
        from k2.feeds.simulator import FaultPlan

        faults = FaultPlan.parse(args.faults or "")
        manifest = args.manifest or (
            settings.home / "feeds" / f"{exchange.name}-faults-seed{args.seed}.json" if faults.any else None
        )
        producer = TradeProducer(settings, exchange, report_successes=manifest is not None)
        producer.check_ready()
        summary = run_simulated_feed(
            producer,
            exchange,
            symbols,
            rate=args.rate,
            duration_s=args.duration,
            count=args.count,
            seed=args.seed,
            faults=faults,
            manifest_path=manifest,
        )
        rows = [
            ("messages", summary.messages),
            ("trades", summary.trades),
            ("elapsed s", summary.elapsed_s),
            ("rate msg/s", summary.rate),
            ("delivered", summary.delivery.delivered),
            ("failed", summary.delivery.failed),
            ("backpressure waits", summary.delivery.backpressure_waits),
            *((f"fault {k}", v) for k, v in sorted(summary.faults.items())),
            *([("manifest", summary.manifest)] if summary.manifest else []),
        ]
    else:
        import threading

        from k2.feeds.live import run_live_feed

        producer = TradeProducer(settings, exchange)
        producer.check_ready()
        stop = threading.Event()
        timer = threading.Timer(args.duration, stop.set) if args.duration else None
        if timer is not None:
            timer.daemon = True
            timer.start()
        summary = run_live_feed(settings, exchange, symbols, producer, url=args.url, stop_event=stop)
        rows = [
            ("url", summary.url),
            ("connections", summary.connections),
            ("reconnects", summary.reconnects),
            *((f"frames {k}", v) for k, v in sorted(summary.frames.items())),
            ("published", summary.published),
            ("publish failed", summary.publish_failed),
            ("delivered", summary.delivery.delivered),
            ("failed", summary.delivery.failed),
            ("elapsed s", round(summary.elapsed_s, 1)),
        ]
    print_table((f"{exchange.name} {args.mode} feed", "value"), rows)
    if not summary.ok:
        print(
            f"k2: error: {summary.delivery.failed} messages were not delivered to Kafka ({summary.delivery.errors})",
            file=sys.stderr,
        )
        return 1
    return 0


def cmd_stream(settings: Settings, args: argparse.Namespace) -> int:
    from k2.exchanges import get_exchange
    from k2.streams.supervisor import StreamSupervisor

    exchanges = [get_exchange(args.exchange).name] if args.exchange else list(settings.exchanges)
    rows = []
    for name in exchanges:
        supervisor = StreamSupervisor(settings, name)
        try:
            if args.action == "start":
                supervisor.clear_stop()
                report = supervisor.reconcile()
            elif args.action == "stop":
                stopped = supervisor.request_stop()
                report = supervisor.reconcile()
                if not stopped:
                    raise K2Error(f"the {name} stream did not stop", f"see {supervisor.paths.log_file}")
            else:
                report = supervisor.reconcile() if args.action == "check" else supervisor.inspect()
        finally:
            supervisor.close()
        rows.append(
            (
                name,
                report.state,
                report.pid or "-",
                report.batch_id if report.batch_id is not None else "-",
                "-" if report.last_batch_age_s is None else f"{report.last_batch_age_s}s",
                "-" if report.lag is None else report.lag,
                report.restarts_last_hour,
                report.reason,
            )
        )
    print_table(("stream", "state", "pid", "batch", "last batch", "lag", "restarts 1h", "why"), rows)
    return 0


def cmd_airflow(settings: Settings, args: argparse.Namespace) -> int:
    if args.action == "dags-folder":
        from k2.resources import DAGS_DIR

        print(DAGS_DIR)
        return 0
    from k2.airflow.install import INIT_COLUMNS, init_airflow, migrate_database

    if args.migrate:
        migrate_database()
    print_table(INIT_COLUMNS, init_airflow(settings))
    return 0


def cmd_settings(settings: Settings, args: argparse.Namespace) -> int:
    print_table(("variable", "value", "source", "meaning"), settings.describe())
    return 0


def ensure_home(settings: Settings) -> None:
    """The state directory, 0700: it holds the catalog, the Airflow DB and generated secrets."""
    try:
        private_dir(settings.home)
    except OSError as exc:
        raise K2Error(
            f"cannot create the state directory {settings.home}: {exc.strerror}",
            "point K2_HOME at a directory you can write, or fix the permissions of its parent.",
        ) from exc


def cmd_gaps(settings: Settings, args: argparse.Namespace) -> int:
    from k2.gaps.repair import repair_gaps

    gaps = _gaps_to_repair(settings, args)
    if not gaps:
        print("no open gaps" + (f" for {args.exchange}" if args.exchange else ""))
        return 0
    report = repair_gaps(settings, gaps, progress=print)
    print()
    print_table(
        ("exchange", "symbol", "missing ids", "missing", "fetched", "published", "still missing", "pages", "result"),
        [
            (
                r.gap.exchange,
                r.gap.exchange_symbol,
                f"{r.gap.first_missing_id}-{r.gap.last_missing_id}",
                r.gap.missing_count,
                r.fetched,
                r.published,
                r.still_missing,
                r.pages,
                f"error: {r.error}" if r.error else r.ended,
            )
            for r in report.gaps
        ],
    )
    print(
        f"\nrequests {report.requests}, rate limited {report.rate_limited}, retried {report.retried}, "
        f"waited {report.waited_s:.1f} s; the next k2_medallion run takes the published trades into Silver"
    )
    if not report.ok:
        failed = sum(not r.ok for r in report.gaps)
        print(f"k2: error: {failed} of {len(report.gaps)} gaps failed (see the result column)", file=sys.stderr)
        return 1
    return 0


def _gaps_to_repair(settings: Settings, args: argparse.Namespace) -> list[Gap]:
    """The one range given on the command line, else every open gap (of --exchange)."""
    from datetime import UTC, datetime

    from k2.exchanges import get_exchange
    from k2.gaps.model import Gap

    ranged = (args.symbol, args.from_id, args.to_id)
    if all(v is None for v in ranged):
        if args.after or args.before:
            raise K2Error("--after and --before belong to a range", "add --symbol, --from-id and --to-id.")
        try:
            from k2.gaps.store import open_gaps
        except ImportError as exc:
            raise K2Error(
                f"listing the open gaps needs gap detection (k2.gaps.store), which this installation lacks: {exc}",
                "repair one range: k2 gaps repair --exchange binance --symbol BTCUSDT --from-id N --to-id M.",
            ) from None
        if args.exchange:
            get_exchange(args.exchange)
        return open_gaps(settings, args.exchange)
    if not (args.exchange and all(v is not None for v in ranged)):
        raise K2Error(
            "a range needs --exchange, --symbol, --from-id and --to-id together",
            "e.g. k2 gaps repair --exchange binance --symbol BTCUSDT --from-id 100 --to-id 250; "
            "or none of them to repair every open gap.",
        )
    exchange = get_exchange(args.exchange)
    after, before = _instant(args.after, "--after"), _instant(args.before, "--before")
    if exchange.rest_pages_by == "time" and after is None:
        raise K2Error(
            f"{exchange.name}'s REST history pages by time, so a range needs --after",
            "pass the event time of the last trade before the gap, e.g. --after 2026-11-30T12:00:00Z "
            "(k2 query trades shows it).",
        )
    return [
        Gap(
            exchange.name,
            exchange.normalise_symbol(args.symbol),
            args.symbol,
            args.from_id,
            args.to_id,
            after or datetime.fromtimestamp(0, UTC),  # Binance pages by id: no time needed
            before or datetime.now(UTC),
        )
    ]


def _instant(text: str | None, option: str) -> datetime | None:
    from datetime import UTC, datetime

    if text is None:
        return None
    try:
        moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise K2Error(f"{option} {text!r} is not an ISO 8601 date-time", "e.g. 2026-11-30T12:00:00Z.") from None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


# --- parser --------------------------------------------------------------------------------------
def cmd_query(settings: Settings, args: argparse.Namespace) -> int:
    import k2.query as q
    from k2.query.output import write

    if args.what == "serve":
        from k2.query.live.server import serve

        return serve(settings)
    split = [s.strip() for s in (args.symbol or "").split(",") if s.strip()] or None
    exchanges = [s.strip() for s in (args.exchange or "").split(",") if s.strip()] or None
    when = {"since": args.since, "start": args.start, "end": args.end, "settings": settings}
    if args.what == "trades":
        table = q.trades(exchanges, split, **when)
    elif args.what == "bars":
        table = q.bars(args.interval, exchanges, split, **when)
    else:
        if not args.sql:
            raise K2Error(
                "`k2 query sql` needs a query", 'e.g. `k2 query sql "SELECT count(*) FROM trades" --since 5m`.'
            )
        table = q.sql(args.sql, exchanges, split, **when)
    write(table, args.format, args.output, args.limit)
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="k2", description="K2 crypto market-data lakehouse. Settings come from K2_* variables (see `k2 settings`)."
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def add(name: str, func: Callable[[Settings, argparse.Namespace], int], help: str):
        p = sub.add_parser(name, help=help, description=help)
        p.set_defaults(func=func)
        return p

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
    p = add("jars", cmd_jars, "Resolve the JVM artifacts with Maven (no-op when up to date).")
    p.add_argument("--force", action="store_true", help="resolve again even if up to date")
    add(
        "system-packages",
        cmd_system_packages,
        "Install the Debian packages the tests need (apt-get; no-op when present).",
    )
    p = add("kafka", cmd_kafka, "Operate the embedded Kafka broker and the exchange topics.")
    p.add_argument(
        "action",
        choices=("start", "stop", "status", "topics", "reset"),
        help="start/stop/status the broker; topics: create or align the exchange topics; "
        "reset: delete the broker's data directory",
    )
    p.add_argument("--yes", action="store_true", help="confirm `reset`")
    p = add("lake", cmd_lake, "Create or list K2's Iceberg namespaces and tables.")
    p.add_argument(
        "action",
        choices=("init", "tables", "show"),
        help="init: create missing namespaces and tables; tables: list them; show: print rows of one",
    )
    p.add_argument("table", nargs="?", help="show: the table, e.g. silver.trades or gold.ohlcv_1m")
    p.add_argument("--where", help="show: row filter, e.g. \"symbol = 'BTC-USDT'\"")
    p.add_argument("--limit", type=int, default=20, help="show: at most this many rows (default 20)")
    p = add(
        "query",
        cmd_query,
        "Trades, OHLCV bars or SQL over them, to the last second: Silver/Gold, then Bronze and the Kafka tail; "
        "serve: run the query server (`k2 up` starts it) that judges each Kafka record once, for fast answers.",
    )
    p.add_argument(
        "what", choices=("trades", "bars", "sql", "serve"), help="trades, bars (--interval), sql QUERY or serve"
    )
    p.add_argument("sql", nargs="?", help="sql: the query; views trades, bars_1m, bars_5m, bars_1h, bars_1d")
    p.add_argument("--exchange", help="exchanges, comma-separated (default: all)")
    p.add_argument("--symbol", help="symbols, comma-separated, as the exchange spells them or BASE-QUOTE")
    p.add_argument("--since", help="a duration back from now: 60s, 15m, 1h, 2d")
    p.add_argument("--start", help="ISO 8601 start (instead of --since)")
    p.add_argument("--end", help="ISO 8601 end (default: now)")
    p.add_argument("--interval", default="1m", choices=("1m", "5m", "1h", "1d"), help="bars: bar width (default 1m)")
    p.add_argument("--format", default="table", choices=("table", "csv", "parquet", "arrow"), help="output format")
    p.add_argument("--output", help="file to write (parquet and arrow need one; csv defaults to stdout)")
    p.add_argument("--limit", type=int, default=50, help="table: rows to print (0: all)")
    p = add(
        "gaps",
        cmd_gaps,
        "Repair gaps in the trade ids: fetch the missing trades from the exchange's REST API and publish them "
        "to Kafka like the live feed.",
    )
    p.add_argument("action", choices=("repair",), help="repair: one range (--symbol ...), else every open gap")
    p.add_argument("--exchange", help="exchange name, e.g. binance or kraken (default: every open gap's)")
    p.add_argument("--symbol", help="range: the symbol as the exchange spells it, e.g. BTCUSDT or BTC/USD")
    p.add_argument("--from-id", type=int, help="range: the first missing trade id")
    p.add_argument("--to-id", type=int, help="range: the last missing trade id")
    p.add_argument(
        "--after", help="range: ISO 8601 event time of the trade before the gap (needed where history pages by time)"
    )
    p.add_argument("--before", help="range: ISO 8601 event time of the trade after the gap (default: now)")
    p = add("feed", cmd_feed, "Publish an exchange's trades to its Kafka topic (simulated or live).")
    p.add_argument("--exchange", required=True, help="exchange name, e.g. binance or kraken")
    p.add_argument(
        "--mode",
        choices=("sim", "live"),
        default="sim",
        help="sim: deterministic simulator (default); live: the exchange's WebSocket feed",
    )
    p.add_argument(
        "--symbols", help="comma-separated exchange symbols (default: K2_<EXCHANGE>_SYMBOLS or the exchange's defaults)"
    )
    p.add_argument(
        "--rate", type=float, default=1000.0, help="sim: messages per second, 0 = as fast as possible (default 1000)"
    )
    p.add_argument("--duration", type=float, help="stop after this many seconds")
    p.add_argument("--count", type=int, help="sim: stop after this many messages")
    p.add_argument("--seed", type=int, default=42, help="sim: random seed (same seed, same messages)")
    p.add_argument(
        "--faults", help="sim: fault probabilities, e.g. duplicate=0.01,malformed=0.005,late=0.01,out_of_order=0.01"
    )
    p.add_argument("--manifest", type=Path, help="sim: where to write the fault manifest (JSON)")
    p.add_argument(
        "--url", help="live: WebSocket base URL (default: K2_<EXCHANGE>_WS_URL or the exchange's public endpoint)"
    )
    p = add("stream", cmd_stream, "Start, stop or inspect the supervised Bronze streams.")
    p.add_argument(
        "action",
        choices=("start", "stop", "status", "check"),
        help="start: clear a stop or give-up and launch; stop: stop cleanly and keep it stopped; "
        "status: show state without acting; check: one supervision step",
    )
    p.add_argument("--exchange", help="one exchange (default: all of K2_EXCHANGES)")
    p = add("airflow", cmd_airflow, "Add K2 to an Airflow: create its pools and variables, or show its DAG folder.")
    p.add_argument(
        "action",
        choices=("init", "dags-folder"),
        help="init: create or align K2's pools and variables in the Airflow of this environment (idempotent; "
        "needs `airflow db migrate` first); dags-folder: print the directory of K2's DAG files",
    )
    p.add_argument(
        "--migrate",
        action="store_true",
        help="with init: run `airflow db migrate` first, in the same process (as `k2 up` does)",
    )
    add("settings", cmd_settings, "Show every K2_* setting with its value and meaning.")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        settings = load_settings()
        configure_logging(settings)
        ensure_home(settings)
        return args.func(settings, args)
    except K2Error as exc:
        print(f"k2: error: {exc.cause}", file=sys.stderr)
        if exc.fix:
            print(f"k2: fix: {exc.fix}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:  # output piped into `head` and the like
        sys.stderr.close()
        return 0


if __name__ == "__main__":
    sys.exit(main())
