"""The simulator's injected faults, through the real broker and Bronze, are all accounted for in
Silver: every malformed message is a dead letter with the right reason and its Kafka coordinates,
every duplicate is counted (never a second Silver row), late and overtaken trades are in Silver."""

from __future__ import annotations

import datetime as dt
import json
import uuid

import pytest

from k2.exchanges import get_exchange
from k2.feeds.producer import TradeProducer
from k2.feeds.runner import run_simulated_feed
from k2.feeds.simulator import FaultPlan
from k2.kafka.topics import ensure_topics
from k2.medallion.interval import Interval
from k2.medallion.job import run
from k2.medallion.transforms.bronze import kafka_to_bronze
from tests.integration.medallion_fixtures import own_lake

pytestmark = pytest.mark.integration

# what Silver calls each of the simulator's malformed variants
REASONS = {
    "truncated_json": "malformed_json",
    "not_utf8": "not_utf8",
    "empty": "empty_payload",
    "future_time": "future_timestamp",
    "ancient_time": "stale_timestamp",
    "missing_price": "missing_price",
    "bad_number": "invalid_price",
    "non_positive_price": "non_positive_price",
}
WHOLE_MESSAGE = {"malformed_json", "not_utf8", "empty_payload"}


@pytest.mark.parametrize("name", ["binance", "kraken"])
def test_every_injected_fault_is_accounted_for(spark, kafka_broker, settings, tmp_path, name: str) -> None:
    lake = own_lake(
        spark,
        tmp_path / "home",
        kafka_port=settings.kafka.port,
        kafka_controller_port=settings.kafka.controller_port,
        topic_template=f"faults-{uuid.uuid4().hex[:8]}.{{exchange}}.raw",
    )
    ensure_topics(lake)
    exchange = get_exchange(name)
    manifest_path = tmp_path / "manifest.json"
    summary = run_simulated_feed(
        TradeProducer(lake, exchange),
        exchange,
        list(exchange.default_symbols),
        rate=0,
        count=4000,
        seed=11,
        manifest_path=manifest_path,
        faults=FaultPlan(duplicate=0.02, malformed=0.03, late=0.02, out_of_order=0.02),
    )
    assert summary.ok
    raw = (
        spark.read.format("kafka")
        .option("kafka.bootstrap.servers", lake.kafka.bootstrap_servers)
        .option("subscribe", lake.topic_for(name))
        .option("startingOffsets", "earliest")
        .option("includeHeaders", "true")
        .load()
    )
    kafka_to_bronze(raw).writeTo(f"{lake.lake.catalog_name}.bronze.{name}_trades").append()

    now = dt.datetime.now(dt.UTC)
    report = run(
        spark, lake, "silver", Interval(name, now - dt.timedelta(hours=1), now + dt.timedelta(hours=1)), lambda *_: {}
    )
    manifest = json.loads(manifest_path.read_text())
    entries = manifest["entries"]
    assert report.bronze_rows == manifest["messages"] == 4000
    assert report.silver_new + report.duplicates + report.dead_letters == report.items

    silver = spark.table(f"{lake.lake.catalog_name}.silver.trades").where(f"exchange = '{name}'")
    by_trade = {
        (r.exchange_symbol, r.trade_id): (r.kafka_partition, r.kafka_offset)
        for r in silver.select("exchange_symbol", "trade_id", "kafka_partition", "kafka_offset").collect()
    }
    assert len(by_trade) == report.silver_new == silver.count()
    dead = {
        (r.kafka_partition, r.kafka_offset, r.item_index): r.reason
        for r in spark.table(f"{lake.lake.catalog_name}.silver.dead_letter").collect()
    }
    assert len(dead) == report.dead_letters

    duplicate_trades, expected_dead = 0, {}
    for entry in entries:
        where = (entry["partition"], entry["offset"])
        trades = [(entry["key"], str(t)) for t in entry["trade_ids"]]
        if entry["fault"] == "malformed":
            reason = REASONS[entry["detail"]]
            if reason in WHOLE_MESSAGE:
                items = [-1]
            elif reason.endswith("_timestamp"):  # the whole message was shifted in time: every trade
                items = list(range(len(trades)))
            else:  # field damage hits the message's first trade only
                items = [0]
            expected_dead.update({(*where, i): reason for i in items})
        elif entry["fault"] == "duplicate":
            duplicate_trades += len(trades)
            assert all(by_trade[t] != where for t in trades), entry  # the first copy is the Silver row
        else:  # late, out_of_order: ordinary trades, a little out of time
            assert all(by_trade[t] == where for t in trades), entry
    assert report.duplicates == duplicate_trades
    assert dead == expected_dead and expected_dead
