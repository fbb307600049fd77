"""Backfill and manual-run parameters are checked before any work, with messages that say why."""

from __future__ import annotations

import datetime as dt

import pytest

from k2.errors import K2Error
from k2.medallion.interval import Interval, validate_interval

NOW = dt.datetime(2026, 11, 22, 12, 30, tzinfo=dt.UTC)
EXCHANGES = ("binance", "kraken")


def check(exchange: str, start: str, end: str) -> Interval:
    return validate_interval(exchange, start, end, exchanges=EXCHANGES, now=NOW)


def test_a_valid_interval_is_parsed_as_utc() -> None:
    interval = check("kraken", "2026-11-20T10:00:00Z", "2026-11-20T13:00:00+01:00")
    assert interval == Interval(
        "kraken", dt.datetime(2026, 11, 20, 10, tzinfo=dt.UTC), dt.datetime(2026, 11, 20, 12, tzinfo=dt.UTC)
    )
    assert [(h.start.hour, h.end.hour) for h in interval.hours()] == [(10, 11), (11, 12)]


def test_naive_times_are_taken_as_utc() -> None:
    assert check("binance", "2026-11-20T10:00", "2026-11-20T11:00").start.tzinfo == dt.UTC


@pytest.mark.parametrize(
    ("exchange", "start", "end", "message"),
    [
        ("bitstamp", "2026-11-20T10:00Z", "2026-11-20T11:00Z", "exchange='bitstamp' is not one of"),
        ("binance", "yesterday", "2026-11-20T11:00Z", "start='yesterday' is not a date-time"),
        ("binance", "2026-11-20T12:00Z", "2026-11-20T10:00Z", "is not before end"),
        ("binance", "2026-11-20T12:00Z", "2026-11-20T12:00Z", "is not before end"),
        ("binance", "2001-01-01T00:00Z", "2001-01-02T00:00Z", "before 2009-01-03"),
        ("binance", "2026-11-22T12:00Z", "2026-11-23T00:00Z", "is in the future"),
        ("binance", "2024-01-01T00:00Z", "2026-01-01T00:00Z", "more than 366"),
    ],
)
def test_bad_parameters_are_rejected_with_the_cause(exchange: str, start: str, end: str, message: str) -> None:
    with pytest.raises(K2Error, match=message) as info:
        check(exchange, start, end)
    assert info.value.fix
