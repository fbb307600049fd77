"""`k2 up` runs its first batch once each stream has committed rows since the feeds started
(k2.runtime.stack.wait_first_rows), on a real SQLite catalog written with pyiceberg: an append from
before the feeds started, or an empty one, does not count, and a silent feed is given up on."""

from __future__ import annotations

import time
from pathlib import Path

import pyarrow as pa

from k2.lake.catalog import load_catalog
from k2.lake.names import bronze_id
from k2.lake.tables import all_tables, ensure_tables
from k2.runtime.stack import wait_first_rows
from k2.settings import Settings


def _append(settings: Settings, exchange: str, rows: int) -> None:
    table = load_catalog(settings.lake).load_table(bronze_id(exchange))
    now = pa.scalar(int(time.time() * 1e6), pa.timestamp("us", "UTC"))
    records = [
        {"kafka_topic": settings.topic_for(exchange), "kafka_partition": 0, "kafka_offset": n,
         "kafka_timestamp": now.as_py(), "kafka_timestamp_type": 0, "key": b"k", "value": b"{}", "headers": [],
         "ingested_at": now.as_py()}
        for n in range(rows)
    ]  # fmt: skip
    table.append(pa.Table.from_pylist(records, schema=table.schema().as_arrow()))


def test_waits_for_rows_committed_since_the_feeds_started_and_names_a_silent_feed(tmp_path: Path) -> None:
    settings = Settings.from_env({}, home=tmp_path)
    assert settings.exchanges == ("binance", "kraken")
    ensure_tables(load_catalog(settings.lake), all_tables(settings))
    _append(settings, "binance", 3)  # a previous session's rows
    time.sleep(0.01)  # snapshot times are in ms: the feeds start strictly after that commit
    feeds_started_ms = int(time.time() * 1000)
    assert wait_first_rows(settings, feeds_started_ms, timeout_s=0.5) == ["binance", "kraken"]

    _append(settings, "binance", 0)  # an empty commit: no rows yet
    _append(settings, "kraken", 2)
    assert wait_first_rows(settings, feeds_started_ms, timeout_s=0.5) == ["binance"]
    assert wait_first_rows(settings, feeds_started_ms, ["kraken"], timeout_s=0.5) == []  # `k2 up`: one at a time
    _append(settings, "binance", 1)
    assert wait_first_rows(settings, feeds_started_ms, timeout_s=0.5) == []
