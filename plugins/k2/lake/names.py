"""Table identifiers, importable without pyiceberg (DAG files use them for Assets)."""

from __future__ import annotations

NAMESPACES = ("bronze", "silver", "gold", "ops")
GOLD_INTERVAL_NAMES = ("1m", "5m", "1h", "1d")
SILVER_TRADES_ID = "silver.trades"
DEAD_LETTER_ID = "silver.dead_letter"


def bronze_id(exchange: str) -> str:
    return f"bronze.{exchange}_trades"


def gold_id(interval: str) -> str:
    return f"gold.ohlcv_{interval}"
