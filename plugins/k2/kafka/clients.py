"""Client-side checks of a Kafka cluster, usable by any process (no broker code)."""

from __future__ import annotations


def broker_reachable(bootstrap_servers: str, timeout: float = 2.0) -> bool:
    """True if a broker answers a metadata request within ``timeout`` seconds."""
    from confluent_kafka.admin import AdminClient

    admin = AdminClient(
        {
            "bootstrap.servers": bootstrap_servers,
            "log_level": 0,
            "socket.connection.setup.timeout.ms": max(1000, int(timeout * 1000)),
        }
    )
    try:
        return bool(admin.list_topics(timeout=timeout).brokers)
    except Exception:
        return False
