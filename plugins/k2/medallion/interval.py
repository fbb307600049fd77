"""Batch intervals and their validation: checked before any work starts, with a message that says
what is wrong."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from k2.errors import K2Error

MAX_BACKFILL = dt.timedelta(days=366)
# what a run's start/end parameters must look like (RFC 3339 with its offset, as the trigger form and
# datetime.isoformat() write them); a JSON-schema pattern, checked wherever Airflow creates the run
DATE_TIME_PATTERN = r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?(Z|[+-]\d{2}:\d{2})$"
EARLIEST = dt.datetime(2009, 1, 3, tzinfo=dt.UTC)  # nothing crypto traded before the genesis block


@dataclass(frozen=True)
class Interval:
    """[start, end) in UTC, for one exchange's data."""

    exchange: str
    start: dt.datetime
    end: dt.datetime

    @property
    def label(self) -> str:
        return f"{self.exchange}/{self.start:%Y-%m-%dT%H:%M}..{self.end:%Y-%m-%dT%H:%M}"

    def hours(self) -> list[Interval]:
        """The interval split into whole hours (a backfill runs hour by hour, like the schedule)."""
        out, cursor = [], self.start
        while cursor < self.end:
            step = min(cursor + dt.timedelta(hours=1), self.end)
            out.append(Interval(self.exchange, cursor, step))
            cursor = step
        return out


def parse_time(value: str | dt.datetime, name: str) -> dt.datetime:
    if isinstance(value, dt.datetime):
        moment = value
    else:
        try:
            moment = dt.datetime.fromisoformat(str(value).strip().replace("Z", "+00:00"))
        except ValueError:
            raise K2Error(
                f"{name}={value!r} is not a date-time", f"give {name} in ISO 8601, e.g. 2026-11-20T13:00:00Z."
            ) from None
    moment = moment.replace(tzinfo=dt.UTC) if moment.tzinfo is None else moment.astimezone(dt.UTC)
    # a plain datetime: Airflow hands over pendulum's, whose arithmetic with timedelta loses the zone
    return dt.datetime.fromtimestamp(0, dt.UTC) + (moment - dt.datetime.fromtimestamp(0, dt.UTC))


def validate_interval(
    exchange: str,
    start: str | dt.datetime,
    end: str | dt.datetime,
    *,
    exchanges: tuple[str, ...],
    now: dt.datetime | None = None,
    max_manual_h: float | None = None,
) -> Interval:
    """A validated interval, or a K2Error naming the parameter and the fix. ``max_manual_h`` bounds
    an interval an operator typed (K2_BATCH_MAX_MANUAL_INTERVAL_H): one run processes it all."""
    if exchange not in exchanges:
        raise K2Error(
            f"exchange={exchange!r} is not one of K2's exchanges ({', '.join(exchanges)})",
            "pick one of them, or add it to K2_EXCHANGES.",
        )
    begin, finish = parse_time(start, "start"), parse_time(end, "end")
    now = now or dt.datetime.now(dt.UTC)
    if begin >= finish:
        raise K2Error(
            f"start {begin.isoformat()} is not before end {finish.isoformat()}",
            "swap them, or give an end later than the start.",
        )
    if begin < EARLIEST:
        raise K2Error(
            f"start {begin.isoformat()} is before {EARLIEST.date()}, when no crypto trades existed",
            "give a start after that date.",
        )
    if finish > now + dt.timedelta(hours=1):
        raise K2Error(
            f"end {finish.isoformat()} is in the future (now {now.isoformat(timespec='seconds')})",
            "give an end no later than the current hour.",
        )
    if finish - begin > MAX_BACKFILL:
        raise K2Error(
            f"the interval spans {(finish - begin).days} days, more than {MAX_BACKFILL.days}",
            "split the backfill into intervals of at most a year.",
        )
    if max_manual_h is not None and finish - begin > dt.timedelta(hours=max_manual_h):
        raise K2Error(
            f"the interval spans {(finish - begin) / dt.timedelta(hours=1):g} h, more than "
            f"K2_BATCH_MAX_MANUAL_INTERVAL_H={max_manual_h:g} h for one manual run",
            f"trigger several runs of at most {max_manual_h:g} h each (or an Airflow backfill: "
            "`airflow backfill create --dag-id k2_medallion --from-date ... --to-date ...`), "
            "or raise K2_BATCH_MAX_MANUAL_INTERVAL_H.",
        )
    return Interval(exchange, begin, finish)
