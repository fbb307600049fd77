"""Which Bronze ranges a batch run processes: asked, holes since the first ingestion, upstream."""

from __future__ import annotations

import datetime as dt

import pytest

from k2.medallion.coverage import Piece, intersect, merge, passes, pieces, plan, subtract, without_empty


def t(hour: float) -> dt.datetime:
    return dt.datetime(2026, 11, 20, tzinfo=dt.UTC) + dt.timedelta(hours=hour)


def spans(work: list[Piece]) -> list[tuple[float, float, bool]]:
    base = t(0)
    return [((p.start - base) / dt.timedelta(hours=1), (p.end - base) / dt.timedelta(hours=1), p.rerun) for p in work]


def test_merge_joins_overlapping_and_adjacent_ranges_and_drops_empty_ones() -> None:
    assert merge([(t(3), t(4)), (t(1), t(2)), (t(2), t(2.5)), (t(3.5), t(5)), (t(6), t(6))]) == [
        (t(1), t(2.5)),
        (t(3), t(5)),
    ]


def test_subtract_and_intersect() -> None:
    assert subtract([(t(0), t(10))], [(t(1), t(2)), (t(4), t(5)), (t(9), t(12))]) == [
        (t(0), t(1)),
        (t(2), t(4)),
        (t(5), t(9)),
    ]
    assert subtract([(t(1), t(2))], [(t(0), t(3))]) == []
    assert intersect([(t(0), t(5))], [(t(1), t(2)), (t(4), t(7))]) == [(t(1), t(2)), (t(4), t(5))]


def test_pieces_are_cut_at_coverage_edges_and_into_hours() -> None:
    # k2 up processed 10:00-10:07; the scheduled hour re-runs that part and processes the rest as new
    covered = [(t(10), t(10 + 7 / 60))]
    assert spans(pieces([(t(10), t(11))], covered)) == [(10, 10 + 7 / 60, True), (10 + 7 / 60, 11, False)]
    assert spans(pieces([(t(9.5), t(11.25))], [])) == [(9.5, 10.5, False), (10.5, 11.25, False)]


def test_without_catch_up_a_run_is_exactly_its_interval() -> None:
    assert spans(plan((t(13), t(14)), [(t(10), t(11))], catch_up=False, origin=t(0))) == [(13, 14, False)]


def test_catch_up_fills_every_hole_since_the_first_ingestion_oldest_first() -> None:
    # the DAG was paused for 11:00-13:00 and hour 8 failed for good; Bronze began at 07:20
    covered = [(t(7), t(8)), (t(9), t(11))]
    work = plan((t(13), t(14)), covered, catch_up=True, origin=t(7 + 20 / 60))
    assert spans(work) == [(8, 9, False), (11, 12, False), (12, 13, False), (13, 14, False)]


def test_catch_up_with_an_empty_ledger_starts_at_the_first_ingestion() -> None:
    assert spans(plan((t(12), t(13)), [], catch_up=True, origin=t(10.5))) == [
        (10.5, 11.5, False),
        (11.5, 12, False),
        (12, 13, False),  # the asked interval stays one piece
    ]


def test_a_re_run_of_a_covered_interval_is_flagged_and_adds_no_hole() -> None:
    assert spans(plan((t(10), t(11)), [(t(9), t(12))], catch_up=True, origin=t(9))) == [(10, 11, True)]


@pytest.mark.parametrize(
    ("silver", "expected"),
    [
        ([(t(9), t(14))], [(11, 12, False), (12, 13, False), (13, 14, False)]),
        ([(t(9), t(12))], [(11, 12, False)]),  # Gold never runs ahead of Silver
        ([], []),
    ],
)
def test_gold_catches_up_only_what_silver_has_covered(silver, expected) -> None:
    work = plan((t(13), t(14)), [(t(9), t(11))], catch_up=True, origin=t(9), upstream=silver)
    assert spans(work) == expected


def test_airflow_intervals_become_plain_utc_datetimes_that_plan_pieces() -> None:
    import pendulum

    from k2.medallion.interval import validate_interval

    start = pendulum.datetime(2026, 11, 20, 13, tz="Europe/Paris")  # what Airflow hands over
    interval = validate_interval("binance", start, start.add(hours=1), exchanges=("binance",))
    assert type(interval.start) is dt.datetime and interval.start == t(12)
    assert spans(plan((interval.start, interval.end), [], catch_up=True, origin=t(9.5))) == [
        (9.5, 10.5, False),
        (10.5, 11.5, False),
        (11.5, 12, False),
        (12, 13, False),
    ]


def test_adjacent_pieces_of_a_kind_share_a_pass_while_their_rows_fit() -> None:
    work = [
        Piece(t(8), t(9), True),
        Piece(t(9), t(10), False),
        Piece(t(10), t(11), False),
        Piece(t(11), t(12), False),  # full: starts a pass of its own
        Piece(t(12), t(13), False),
        Piece(t(14), t(15), False),  # not adjacent
    ]
    rows = [5, 10, 20, 90, 5, 1]
    assert spans(passes(work, rows, max_rows=100)) == [
        (8, 9, True),  # a re-run never joins new pieces: each range is wholly new or wholly re-run
        (9, 11, False),
        (11, 13, False),
        (14, 15, False),
    ]
    assert passes(work, rows, max_rows=0) == work  # 0: one pass per piece (empty pieces aside)
    assert spans(passes(work[1:3], [0, 0], max_rows=0)) == [(9, 11, False)]
    assert passes([], [], max_rows=10) == []


def test_empty_pieces_beside_pieces_with_rows_are_settled_without_a_pass() -> None:
    work = [Piece(t(8), t(9), False), Piece(t(9), t(10), False), Piece(t(11), t(12), True)]
    kept, rows, settled = without_empty(work, [0, 7, 0])
    assert (spans(kept), rows, spans(settled)) == ([(9, 10, False)], [7], [(8, 9, False), (11, 12, True)])
    # nothing but empty pieces: the run keeps them, so its gates warn of an interval without trades
    assert without_empty(work, [0, 0, 0]) == (work, [0, 0, 0], [])
    assert without_empty([], []) == ([], [], [])
