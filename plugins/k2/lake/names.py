"""Facts about K2's tables that DAG files and Spark transforms share, importable without pyiceberg
or pyspark: identifiers, bar widths, the money type."""

from __future__ import annotations

NAMESPACES = ("bronze", "silver", "gold", "ops")
# Gold bar widths in seconds; each has its own table gold.ohlcv_<width>
BAR_WIDTHS_S = {"1m": 60, "5m": 300, "1h": 3600, "1d": 86_400}
GOLD_INTERVAL_NAMES = tuple(BAR_WIDTHS_S)

# Prices and sizes are exact decimals end to end. 18 fractional digits hold the product of two
# 8-decimal exchange values (quote amount) without rounding.
MONEY_PRECISION, MONEY_SCALE = 38, 18
MONEY_SQL = f"decimal({MONEY_PRECISION},{MONEY_SCALE})"
SILVER_TRADES_ID = "silver.trades"
DEAD_LETTER_ID = "silver.dead_letter"
CONNECTION_EVENTS_ID = "ops.connection_events"
TRADE_GAPS_ID = "ops.trade_gaps"


def bronze_id(exchange: str) -> str:
    return f"bronze.{exchange}_trades"


def gold_id(interval: str) -> str:
    return f"gold.ohlcv_{interval}"


def qualified(catalog: str, identifier: str) -> str:
    """``<catalog>.<namespace>.<table>``: how Spark SQL names a K2 table."""
    return f"{catalog}.{identifier}"
