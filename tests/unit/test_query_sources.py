"""Silver's part of a query (k2.query.sources.silver_trades) on a real SQLite catalog written with
pyiceberg: at the live edge, past every event time Silver holds, it plans no scan; a commit that
brings a row into the window is seen at the next query."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal
from pathlib import Path

import pyarrow as pa

from k2.lake.catalog import load_catalog
from k2.lake.tables import SILVER_TRADES, all_tables, ensure_tables
from k2.query import sources
from k2.query.hybrid import TRADE_COLUMNS
from k2.settings import Settings

NOON = dt.datetime(2026, 12, 6, 12, 0, tzinfo=dt.UTC)


def _append(settings: Settings, rows: list[tuple[str, str, dt.datetime]]) -> None:
    """Silver rows: (exchange, trade id, event time)."""
    table = load_catalog(settings.lake).load_table(SILVER_TRADES.identifier)
    one = Decimal("1.5")
    records = [
        {"exchange": exchange, "symbol": "BTC-USDT", "exchange_symbol": "BTCUSDT", "trade_id": trade_id,
         "event_time": at, "price": one, "quantity": one, "quote_amount": one, "taker_side": "buy",
         "kafka_topic": f"k2.{exchange}.raw", "kafka_partition": 0, "kafka_offset": int(trade_id),
         "kafka_timestamp": at, "bronze_ingested_at": at, "processed_at": at}
        for exchange, trade_id, at in rows
    ]  # fmt: skip
    table.append(pa.Table.from_pylist(records, schema=table.schema().as_arrow()))


def _ids(settings: Settings, start: dt.datetime, end: dt.datetime) -> list[str]:
    table = sources.silver_trades(settings, ["binance"], ["BTCUSDT"], start, end)
    return sorted(table.column("trade_id").to_pylist())


def test_silver_past_its_latest_event_plans_no_scan_and_misses_no_row(tmp_path: Path) -> None:
    settings = Settings.from_env({}, home=tmp_path)
    ensure_tables(load_catalog(settings.lake), all_tables(settings))
    last_minute = (NOON - dt.timedelta(seconds=60), NOON)
    _append(settings, [("binance", str(n), NOON - dt.timedelta(hours=2, minutes=n)) for n in range(5)])
    _append(settings, [("kraken", "9", NOON - dt.timedelta(seconds=30))])  # another exchange's late trade

    silver = sources._table(settings, SILVER_TRADES.identifier)
    assert sources.latest_event_time(silver, ["binance"], last_minute[0]) == NOON - dt.timedelta(hours=2)
    empty = sources.silver_trades(settings, ["binance"], ["BTCUSDT"], *last_minute)
    assert empty.num_rows == 0
    assert empty.schema.equals(silver.scan().to_arrow().schema, check_metadata=True)  # the shape a scan gives
    some = sources.silver_trades(settings, ["binance"], None, *last_minute, columns=TRADE_COLUMNS)
    assert some.num_rows == 0
    assert some.schema.equals(silver.scan(selected_fields=TRADE_COLUMNS).to_arrow().schema, check_metadata=True)
    assert _ids(settings, NOON - dt.timedelta(hours=3), NOON) == ["0", "1", "2", "3", "4"]

    # a later commit's file reaches into the window: its bound is read at once, not a cached one
    _append(
        settings, [("binance", "5", NOON - dt.timedelta(hours=1)), ("binance", "6", NOON - dt.timedelta(seconds=5))]
    )
    assert _ids(settings, *last_minute) == ["6"]
    # a window on another day reads that day's manifests
    yesterday = NOON - dt.timedelta(days=1)
    _append(settings, [("binance", "7", yesterday)])
    assert _ids(settings, yesterday - dt.timedelta(seconds=1), yesterday + dt.timedelta(seconds=1)) == ["7"]
    assert sources.latest_event_time(silver, ["kraken"], last_minute[0]) == NOON - dt.timedelta(seconds=30)
