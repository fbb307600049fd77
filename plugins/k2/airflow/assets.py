"""Airflow Assets for K2's Iceberg tables: the lineage the UI shows between the layers."""

from __future__ import annotations

from airflow.sdk import Asset

from k2.lake.names import DEAD_LETTER_ID, GOLD_INTERVAL_NAMES, SILVER_TRADES_ID, bronze_id, gold_id


def table_asset(identifier: str) -> Asset:
    namespace, name = identifier.split(".", 1)
    return Asset(name=identifier, uri=f"iceberg://k2/{namespace}/{name}", group="k2")


def bronze_asset(exchange: str) -> Asset:
    return table_asset(bronze_id(exchange))


SILVER_ASSETS = [table_asset(SILVER_TRADES_ID), table_asset(DEAD_LETTER_ID)]
GOLD_ASSETS = [table_asset(gold_id(i)) for i in GOLD_INTERVAL_NAMES]
