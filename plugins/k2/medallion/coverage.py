"""Which Bronze ingestion-time ranges a batch run works on: what it was asked for, plus every range
before it that its layer has not covered yet (scheduler downtime, a paused DAG, a failed hour), so
the schedule never leaves a hole. Pure range arithmetic over the medallion ledger's rows.

A range is [start, end) of ``ingested_at``, the time the Bronze stream wrote a record: it only grows,
whatever the producers' clocks say, so a record stamped inside a processed hour but appended later
falls into a later range instead of being skipped.
"""

from __future__ import annotations

import datetime as dt
import itertools
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

Range = tuple[dt.datetime, dt.datetime]
HOUR = dt.timedelta(hours=1)


@dataclass(frozen=True)
class Piece:
    """One unit of batch work: a range within one hour, and whether the layer covered it before."""

    start: dt.datetime
    end: dt.datetime
    rerun: bool


def merge(ranges: Iterable[Range]) -> list[Range]:
    """Sorted, non-overlapping, adjacent ranges joined."""
    out: list[Range] = []
    for start, end in sorted(r for r in ranges if r[0] < r[1]):
        if out and start <= out[-1][1]:
            out[-1] = (out[-1][0], max(out[-1][1], end))
        else:
            out.append((start, end))
    return out


def subtract(wanted: Iterable[Range], covered: Iterable[Range]) -> list[Range]:
    """Parts of ``wanted`` outside ``covered``."""
    cover = merge(covered)
    out: list[Range] = []
    for start, end in merge(wanted):
        cursor = start
        for c_start, c_end in cover:
            if c_end <= cursor or c_start >= end:
                continue
            if c_start > cursor:
                out.append((cursor, c_start))
            cursor = max(cursor, c_end)
        if cursor < end:
            out.append((cursor, end))
    return out


def intersect(a: Iterable[Range], b: Iterable[Range]) -> list[Range]:
    bb = merge(b)
    return merge((max(s, bs), min(e, be)) for s, e in merge(a) for bs, be in bb if max(s, bs) < min(e, be))


def pieces(ranges: Iterable[Range], covered: Iterable[Range], cuts: Iterable[dt.datetime] = ()) -> list[Piece]:
    """The ranges cut at the edges of ``covered`` and at ``cuts``, then into hours from each part's
    start, oldest first: each piece is wholly new or wholly a re-run, so new pieces never overlap."""
    cover = merge(covered)
    edges = sorted({t for r in cover for t in r} | set(cuts))
    out: list[Piece] = []
    for start, end in merge(ranges):
        bounds = [start, *(t for t in edges if start < t < end), end]
        for part_start, part_end in itertools.pairwise(bounds):
            rerun = any(s <= part_start and part_end <= e for s, e in cover)
            cursor = part_start
            while cursor < part_end:
                step = min(cursor + HOUR, part_end)
                out.append(Piece(cursor, step, rerun))
                cursor = step
    return out


def plan(
    asked: Range,
    covered: Iterable[Range],
    *,
    catch_up: bool,
    origin: dt.datetime | None = None,
    upstream: Iterable[Range] | None = None,
) -> list[Piece]:
    """The pieces a run processes, oldest first.

    Without ``catch_up`` (an explicit backfill or re-run): exactly ``asked``. With it (the
    schedule): ``asked`` plus whatever before it this layer has not covered since ``origin`` (the
    first Bronze ingestion; None: nothing before ``asked``), in pieces of at most an hour, limited
    to what the upstream layer has covered (Gold cannot summarise trades Silver has not written).
    """
    if not catch_up:
        return pieces([asked], covered)
    wanted = [asked]
    if origin is not None and origin < asked[0]:
        wanted += subtract([(origin, asked[0])], covered)
    if upstream is not None:
        wanted = intersect(wanted, upstream)
    return pieces(wanted, covered, cuts=asked)


def passes(work: Sequence[Piece], rows: Sequence[int], max_rows: int) -> list[Piece]:
    """The pieces joined into Spark passes, in order: adjacent pieces of the same kind (new or
    re-run) share a pass while their Bronze rows (``rows``, one per piece) add up to at most
    ``max_rows``. A pass has a fixed cost (reading the tables, the gates, the commits: about 18 s
    on 2 cores) that, paid per hour, dominated a catch-up of quiet hours."""
    out: list[Piece] = []
    total = 0
    for piece, n in zip(work, rows, strict=True):
        if out and out[-1].end == piece.start and out[-1].rerun == piece.rerun and total + n <= max_rows:
            out[-1] = Piece(out[-1].start, piece.end, piece.rerun)
            total += n
        else:
            out.append(piece)
            total = n
    return out


def without_empty(work: Sequence[Piece], rows: Sequence[int]) -> tuple[list[Piece], list[int], list[Piece]]:
    """(pieces to process, their rows, pieces to record as done without Spark). A piece no Bronze
    file can hold rows for (``rows`` is an upper bound, so 0 is exact) needs no pass of its own, but
    only beside one with rows: a run over nothing but empty pieces still runs its gates, which warn
    of an interval without trades."""
    if not any(rows):
        return list(work), list(rows), []
    kept = [(p, n) for p, n in zip(work, rows, strict=True) if n]
    return [p for p, _ in kept], [n for _, n in kept], [p for p, n in zip(work, rows, strict=True) if not n]
