"""What runs where: one row per component of the stack, for ``k2 status`` and ``k2 up``."""

from __future__ import annotations

from k2.errors import K2Error
from k2.settings import Settings

Row = tuple[str, str, str, str]


def stack_status(settings: Settings) -> list[Row]:
    return [_kafka(settings), _topics(settings), _catalog(settings), _spark(settings)]


def _kafka(settings: Settings) -> Row:
    from k2.kafka.broker import LocalKafkaBroker, broker_reachable

    if not settings.kafka_embedded:
        up = broker_reachable(settings.kafka_bootstrap_servers)
        state = "reachable" if up else "UNREACHABLE"
        return ("kafka", state, settings.kafka_bootstrap_servers, "external cluster")
    status = LocalKafkaBroker(settings).status()
    state = f"running (pid {status.pid})" if status.running else "stopped"
    return ("kafka", state, status.bootstrap_servers, f"embedded KRaft, data {status.data_dir}")


def _topics(settings: Settings) -> Row:
    from k2.kafka.broker import broker_reachable
    from k2.kafka.topics import admin_client, exchange_topics

    wanted = [t.name for t in exchange_topics(settings)]
    if not broker_reachable(settings.kafka_bootstrap_servers, timeout=1.0):
        return ("topics", "unknown", settings.kafka_bootstrap_servers, "broker not reachable")
    existing = admin_client(settings).list_topics(timeout=5).topics
    present = [t for t in wanted if t in existing]
    parts = {t: len(existing[t].partitions) for t in present}
    state = f"{len(present)}/{len(wanted)} present"
    return ("topics", state, settings.kafka_bootstrap_servers,
            ", ".join(f"{t} ({parts[t]}p)" for t in present) or "run `k2 kafka topics`")


def _catalog(settings: Settings) -> Row:
    from k2.lake.catalog import load_catalog, sqlite_path
    from k2.lake.tables import all_tables

    where = str(sqlite_path(settings) or settings.catalog_uri)
    try:
        catalog = load_catalog(settings)
        present = sum(catalog.table_exists(s.identifier) for s in all_tables(settings))
    except K2Error as exc:
        return ("iceberg catalog", "UNAVAILABLE", where, exc.cause)
    kind = "sqlite (JDBC + pyiceberg SqlCatalog)" if sqlite_path(settings) else settings.catalog_type
    return ("iceberg catalog", f"{present}/{len(all_tables(settings))} tables", where,
            f"{kind}, warehouse {settings.warehouse}")


def _spark(settings: Settings) -> Row:
    ui = "UI on 127.0.0.1:4040+" if settings.spark_ui_enabled else "UI off"
    return ("spark", "on demand", settings.spark_master, f"driver {settings.spark_driver_memory}, {ui}")
