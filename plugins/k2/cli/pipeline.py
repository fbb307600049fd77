"""The trades' way in and out: the feed, stream and query commands."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from k2.cli.registry import Add
from k2.cli.table import print_table
from k2.errors import K2Error
from k2.settings import Settings


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


def cmd_query(settings: Settings, args: argparse.Namespace) -> int:
    import warnings

    import k2.query as q
    from k2.query.output import write

    if args.what == "serve":
        from k2.query.live.server import serve

        return serve(settings)
    with warnings.catch_warnings(record=True) as warned:
        # --complete: a partial answer (the broker out of reach) is an error, not a warning
        warnings.simplefilter("error" if args.complete else "always", q.PartialAnswer)
        table = _query(q, settings, args)
    write(table, args.format, args.output, args.limit)
    for warning in warned:
        if isinstance(warning.message, q.PartialAnswer):
            print(f"k2: warning: {warning.message.cause}\nk2: fix: {warning.message.fix}", file=sys.stderr)
        else:
            warnings.showwarning(warning.message, warning.category, warning.filename, warning.lineno)
    return 0


def _query(q, settings: Settings, args: argparse.Namespace):  # q: k2.query -> pyarrow.Table
    split = [s.strip() for s in (args.symbol or "").split(",") if s.strip()] or None
    exchanges = [s.strip() for s in (args.exchange or "").split(",") if s.strip()] or None
    if args.what == "sql" and not args.sql:
        raise K2Error("`k2 query sql` needs a query", 'e.g. `k2 query sql "SELECT count(*) FROM trades" --since 5m`.')
    if not args.since and not args.start:
        raise K2Error(
            f"k2 query {args.what} needs a time window",
            "add --since (a duration back from now, e.g. --since 5m) or --start (e.g. --start 2026-11-30T10:00:00Z).",
        )
    when = {"since": args.since, "start": args.start, "end": args.end, "settings": settings}
    if args.what == "trades":
        return q.trades(exchanges, split, **when)
    if args.what == "bars":
        return q.bars(args.interval, exchanges, split, **when)
    return q.sql(args.sql, exchanges, split, **when)


def register(add: Add) -> None:
    """Declares these commands and their arguments."""
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
    p.add_argument(
        "--complete",
        action="store_true",
        help="fail rather than answer without the Kafka tail when the broker is out of reach (default: answer "
        "from the lake and warn)",
    )
