"""Reads ``ops.trade_gaps`` without Spark (pyiceberg): the gaps still open, for repair and monitoring."""

from __future__ import annotations

import datetime as dt
from typing import TYPE_CHECKING, Any

from k2.errors import K2Error
from k2.gaps.model import Gap
from k2.lake.names import TRADE_GAPS_ID

if TYPE_CHECKING:
    from k2.settings import Settings


def open_gap_rows(settings: Settings, exchange: str | None = None) -> list[dict[str, Any]]:
    """Every column of the open gaps (closed_at null), oldest first."""
    from pyiceberg.exceptions import NoSuchTableError
    from pyiceberg.expressions import And, EqualTo, IsNull

    from k2.lake.catalog import load_catalog

    try:
        table = load_catalog(settings.lake).load_table(TRADE_GAPS_ID)
    except NoSuchTableError:
        raise K2Error(
            f"the lake has no table {TRADE_GAPS_ID}", "create K2's tables with `k2 lake init` (or `k2 up`)."
        ) from None
    where = IsNull("closed_at") if exchange is None else And(IsNull("closed_at"), EqualTo("exchange", exchange))
    rows = table.scan(row_filter=where).to_arrow().to_pylist()
    return sorted(rows, key=lambda r: (r["exchange"], r["symbol"], r["first_missing_id"]))


def open_gaps(settings: Settings, exchange: str | None = None) -> list[Gap]:
    """The gaps not closed yet (their missing ids are not in Silver), per exchange and symbol in id order."""
    return [
        Gap(
            r["exchange"],
            r["symbol"],
            r["exchange_symbol"],
            r["first_missing_id"],
            r["last_missing_id"],
            _utc(r["after_time"]),
            _utc(r["before_time"]),
        )
        for r in open_gap_rows(settings, exchange)
    ]


def _utc(moment: dt.datetime) -> dt.datetime:
    return moment.astimezone(dt.UTC) if moment.tzinfo else moment.replace(tzinfo=dt.UTC)
