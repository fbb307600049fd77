"""K2's DAG ids, defined once: the DAG files declare them, `k2 up` unpauses and triggers them."""

from __future__ import annotations

MEDALLION = "k2_medallion"
MONITORING = "k2_monitoring"
MAINTENANCE = "k2_maintenance"


def bronze_stream(exchange: str) -> str:
    """The supervisor DAG of one exchange's Bronze stream."""
    return f"k2_bronze_stream_{exchange}"
