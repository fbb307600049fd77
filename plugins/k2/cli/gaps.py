"""The gaps repair command: fetch the trades missing from the record and publish them like the feed."""

from __future__ import annotations

import argparse
import sys
from typing import TYPE_CHECKING

from k2.cli.registry import Add
from k2.cli.table import print_table
from k2.errors import K2Error
from k2.settings import Settings

if TYPE_CHECKING:
    from datetime import datetime

    from k2.gaps.model import Gap


def cmd_gaps(settings: Settings, args: argparse.Namespace) -> int:
    from k2.gaps.repair import repair_gaps

    gaps = gaps_to_repair(settings, args)
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


def gaps_to_repair(settings: Settings, args: argparse.Namespace) -> list[Gap]:
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


def register(add: Add) -> None:
    """Declares these commands and their arguments."""
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
