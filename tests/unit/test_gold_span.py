"""Gold's MERGE window is the same instant whatever the driver's time zone."""

from __future__ import annotations

import datetime as dt
import time

import pytest

from k2.medallion.gold import floor_time


@pytest.mark.parametrize("zone", ["UTC", "America/New_York", "Asia/Kolkata"])
def test_floor_time_reads_naive_moments_as_the_driver_local_time(zone: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TZ", zone)
    time.tzset()
    try:
        instant = dt.datetime(2026, 11, 30, 10, 37, 12, tzinfo=dt.UTC)
        collected = dt.datetime.fromtimestamp(instant.timestamp())  # what pyspark's collect() returns: local, naive
        assert floor_time(collected, dt.timedelta(hours=1)) == dt.datetime(2026, 11, 30, 10, tzinfo=dt.UTC)
        assert floor_time(instant, dt.timedelta(minutes=5)) == dt.datetime(2026, 11, 30, 10, 35, tzinfo=dt.UTC)
    finally:
        monkeypatch.undo()  # the caller's TZ back, and the C library told about it
        time.tzset()
