"""Nothing lost whatever the schedule or the producers' clocks, on real Spark and Iceberg: missed
hours are caught up, records stamped inside a processed hour are taken by the hour they arrived in,
and hours without data are settled without a Spark job. The logic is the engine's caller, not the
engine: these run once, on Spark Connect as the Airflow tasks do (test_on_spark_connect.py starts that run)."""

from __future__ import annotations

from decimal import Decimal as D

import pytest

from k2.lake.tables import MEDALLION_LEDGER
from k2.medallion import ledger
from k2.medallion.interval import Interval
from k2.medallion.job import run
from tests.integration.medallion_fixtures import at, binance, naive, own_lake, write_bronze

pytestmark = [pytest.mark.integration, pytest.mark.on_connect]


def hour(h: int, exchange: str = "binance") -> Interval:
    return Interval(exchange, at(f"2026-11-20T{h:02d}:00:00"), at(f"2026-11-20T{h + 1:02d}:00:00"))


def no_gate(layer, frame, interval):
    return {"gate": "off in this test"}


def both_layers(spark, settings, interval, *, catch_up):
    silver = run(spark, settings, "silver", interval, no_gate, catch_up=catch_up)
    return silver, run(spark, settings, "gold", interval, no_gate, catch_up=catch_up)


def silver_ids(spark, settings) -> list[int]:
    return sorted(int(r.trade_id) for r in spark.table(f"{settings.lake.catalog_name}.silver.trades").collect())


@pytest.fixture
def four_hours(spark, tmp_path):
    """Trades ingested in each of 10:00-14:00 (ids 10h+0, 10h+1)."""
    settings = own_lake(spark, tmp_path / "home", batch_catch_up_max_pieces=2)
    records = []
    for h in range(10, 14):
        for i in range(2):
            when = f"2026-11-20T{h:02d}:{10 + i:02d}:00"
            records.append((0, (h - 10) * 2 + i, when, binance(10 * h + i, "100.00", "1.0", when)))
    write_bronze(spark, settings, "binance", records)
    return settings


def test_hours_missed_while_the_dag_was_paused_are_caught_up_oldest_first(spark, four_hours) -> None:
    settings = four_hours
    both_layers(spark, settings, hour(10), catch_up=True)
    assert silver_ids(spark, settings) == [100, 101]
    # paused through 11:00-13:00: the next scheduled run is 13:00's, limited to 2 pieces per run
    silver, gold = both_layers(spark, settings, hour(13), catch_up=True)
    assert silver_ids(spark, settings) == [100, 101, 110, 111, 120, 121]
    assert (silver.silver_new, silver.pieces_left) == (4, 1)
    assert silver.pieces == ["2026-11-20T11:00:00..13:00:00"]  # two quiet hour pieces, one Spark pass
    assert gold.pieces == silver.pieces  # Gold follows Silver's coverage, never ahead of it
    silver, gold = both_layers(spark, settings, hour(13), catch_up=True)  # the run's retry goes on
    assert silver_ids(spark, settings) == [100, 101, 110, 111, 120, 121, 130, 131]
    assert (silver.silver_new, silver.pieces_left) == (2, 0)
    bars = {r.bar_start: r.trade_count for r in spark.table(f"{settings.lake.catalog_name}.gold.ohlcv_1h").collect()}
    assert bars == {naive(f"2026-11-20T{h:02d}:00:00"): 2 for h in range(10, 14)}
    assert ledger.covered(settings.lake, "silver", "binance") == ledger.covered(settings.lake, "gold", "binance")
    # everything covered: a further run is a re-run of its own hour only
    again, _ = both_layers(spark, settings, hour(13), catch_up=True)
    assert (again.silver_new, again.duplicates, again.pieces) == (0, 2, ["2026-11-20T13:00:00..14:00:00 (re-run)"])


def test_a_first_run_processes_everything_bronze_ingested_before_it(spark, four_hours) -> None:
    silver, _ = both_layers(spark, four_hours, hour(11), catch_up=True)
    assert silver_ids(spark, four_hours) == [100, 101, 110, 111]  # hour 10 too: the ledger was empty
    assert silver.pieces_left == 0


def test_a_backfill_without_catch_up_processes_exactly_its_interval(spark, four_hours) -> None:
    both_layers(spark, four_hours, hour(12), catch_up=False)
    assert silver_ids(spark, four_hours) == [120, 121]


def test_a_record_stamped_inside_a_processed_hour_is_taken_by_the_hour_it_arrived_in(spark, tmp_path) -> None:
    settings = own_lake(spark, tmp_path / "home")
    write_bronze(
        spark, settings, "binance", [(0, 0, "2026-11-20T10:00:40", binance(1, "100", "1", "2026-11-20T10:00:05"))]
    )
    both_layers(spark, settings, hour(10), catch_up=True)
    # a producer retried across a broker outage: stamped 10:00:50 (CreateTime), appended at 11:20
    late = binance(2, "98", "1", "2026-11-20T10:00:50")
    write_bronze(spark, settings, "binance", [(0, 1, "2026-11-20T10:00:50", late, "2026-11-20T11:20:00")])
    silver, _ = both_layers(spark, settings, hour(11), catch_up=True)
    assert silver.silver_new == 1 and silver_ids(spark, settings) == [1, 2]
    (bar,) = spark.table(f"{settings.lake.catalog_name}.gold.ohlcv_1m").collect()
    assert (bar.bar_start, bar.trade_count, bar.close, bar.low) == (naive("2026-11-20T10:00:00"), 2, D(98), D(98))


def test_hours_without_data_are_settled_without_spark_but_not_over_a_hole_with_data(spark, tmp_path) -> None:
    settings = own_lake(spark, tmp_path / "home")
    when = "2026-11-20T10:30:00"
    write_bronze(spark, settings, "binance", [(0, 0, when, binance(1, "100", "1", when))])
    # hour 10 holds a record no run processed yet: hour 11 (empty) must not be skipped
    assert not ledger.settle_if_empty(settings, hour(11), catch_up=True)
    assert ledger.settle_if_empty(settings, hour(11), catch_up=False)  # a backfill of the empty hour alone
    both_layers(spark, settings, hour(10), catch_up=True)
    assert ledger.settle_if_empty(settings, hour(12), catch_up=True)
    # a scheduled run over a range settled empty before redoes nothing (no Spark pass, no gate)
    silver, gold = both_layers(spark, settings, hour(12), catch_up=True)
    assert silver.pieces == [] and gold.pieces == []
    rows = load_ledger(settings)
    assert {(r["layer"], r["range_start"].hour) for r in rows if r["bronze_rows"] == 0} >= {
        ("silver", 12),
        ("gold", 12),
    }
    # an empty piece beside one with rows (k2 up's first run, the schedule's run having settled the
    # hour before it): recorded without a pass, so the pass reads only the piece with rows
    when = "2026-11-20T14:30:00"
    write_bronze(spark, settings, "binance", [(0, 1, when, binance(2, "101", "1", when))])
    two_hours = Interval("binance", at("2026-11-20T13:00:00"), at("2026-11-20T15:00:00"))
    silver, gold = both_layers(spark, settings, two_hours, catch_up=False)
    assert silver.pieces == gold.pieces == ["2026-11-20T14:00:00..15:00:00"] and silver.silver_new == 1
    settled = {
        (r["layer"], r["range_start"].hour, r["range_end"].hour, r["bronze_rows"]) for r in load_ledger(settings)
    }
    assert {("silver", 13, 14, 0), ("gold", 13, 14, 0), ("silver", 14, 15, 1)} <= settled


def load_ledger(settings) -> list[dict]:
    from k2.lake.catalog import load_catalog

    return load_catalog(settings.lake).load_table(MEDALLION_LEDGER.identifier).scan().to_arrow().to_pylist()


def test_reconciliation_counts_kafka_bronze_silver_and_what_waits_and_finds_a_gap(spark, four_hours) -> None:
    from k2.monitoring.reconcile import reconcile
    from k2.streams.state import StreamPaths, write_json

    settings = four_hours
    paths = StreamPaths.of(settings, "binance")
    paths.root.mkdir(parents=True, exist_ok=True)
    write_json(paths.progress, {"end_offsets": {settings.topic_for("binance"): {"0": 8}}})
    both_layers(spark, settings, hour(11), catch_up=True)  # hours 10 and 11
    now = at("2026-11-20T14:30:00").timestamp()
    r = reconcile(settings, "binance", now)
    assert (r.kafka_committed, r.bronze_rows, r.silver_accounted_rows, r.unprocessed_rows) == (8, 8, 4, 4)
    assert (r.bronze_gap_rows, r.silver_gap_rows) == (0, 0)
    assert r.unprocessed_age_s == pytest.approx(now - at("2026-11-20T12:10:00").timestamp())
    # a row that reached Bronze inside a range Silver had already processed, and one Kafka offset
    # the stream committed that Bronze never got
    when = "2026-11-20T10:30:00"
    write_bronze(spark, settings, "binance", [(0, 8, when, binance(999, "1", "1", when))])
    write_json(paths.progress, {"end_offsets": {settings.topic_for("binance"): {"0": 10}}})
    r = reconcile(settings, "binance", now)
    assert (r.bronze_gap_rows, r.silver_gap_rows) == (1, 1)
