from pyiceberg.types import DecimalType, ListType

from k2.lake.tables import GOLD_INTERVALS, all_tables, bronze_table, gold_table
from k2.settings import Settings


def test_every_layer_has_its_tables() -> None:
    names = [t.identifier for t in all_tables(Settings.from_env({}))]
    assert names == [
        "bronze.binance_trades",
        "bronze.kraken_trades",
        "silver.trades",
        "silver.dead_letter",
        *(f"gold.ohlcv_{i}" for i in GOLD_INTERVALS),
        "ops.stream_metrics",
        "ops.alert_events",
        "ops.medallion_ledger",
        "ops.connection_events",
        "ops.trade_gaps",
    ]


def test_bronze_keeps_raw_payload_and_kafka_coordinates() -> None:
    spec = bronze_table("binance")
    schema = spec.schema()
    cols = [f.name for f in schema.fields]
    for name in (
        "kafka_topic",
        "kafka_partition",
        "kafka_offset",
        "kafka_timestamp",
        "key",
        "value",
        "headers",
        "ingested_at",
    ):
        assert name in cols
    assert isinstance(schema.find_field("headers").field_type, ListType)
    ids = [schema.find_field(n).field_id for n in ("kafka_topic", "kafka_partition", "kafka_offset")]
    assert sorted(schema.identifier_field_ids) == sorted(ids)
    partition = spec.partition_spec(schema)
    assert [f.name for f in partition.fields] == ["kafka_timestamp_day"]


def test_field_ids_are_unique_across_nested_types() -> None:
    schema = bronze_table("kraken").schema()
    ids = [f.field_id for f in schema._lazy_id_to_field.values()]
    assert len(ids) == len(set(ids))


def test_gold_money_columns_are_exact_decimals() -> None:
    schema = gold_table("1m").schema()
    for name in ("open", "high", "low", "close", "vwap", "volume_base", "volume_quote"):
        assert isinstance(schema.find_field(name).field_type, DecimalType)
    assert [f.name for f in gold_table("1d").partition_spec(schema).fields] == ["exchange", "bar_start_year"]
