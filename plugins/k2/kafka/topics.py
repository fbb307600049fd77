"""Exchange topics, declared once from settings and applied idempotently to any Kafka cluster."""

from __future__ import annotations

import time
from dataclasses import dataclass, field

from k2.errors import K2Error
from k2.log import get_logger
from k2.settings import KafkaSettings, Settings

log = get_logger(__name__)


@dataclass(frozen=True)
class TopicSpec:
    name: str
    partitions: int
    replication_factor: int
    config: dict[str, str] = field(default_factory=dict)


def exchange_topics(settings: Settings) -> list[TopicSpec]:
    config = {
        "retention.ms": str(settings.topics.retention_ms),
        "compression.type": settings.topics.compression,
        "cleanup.policy": "delete",
        # acks=all then needs a second copy: one broker may die without losing an acknowledged record
        "min.insync.replicas": str(min_insync_replicas(settings.topics.replication_factor)),
    }
    return [
        TopicSpec(settings.topic_for(ex), settings.topics.partitions, settings.topics.replication_factor, dict(config))
        for ex in settings.exchanges
    ]


def min_insync_replicas(replication_factor: int) -> int:
    """2 from three copies up (writes go on with one broker down), else 1."""
    return 2 if replication_factor >= 3 else 1


def admin_client(kafka: KafkaSettings):  # -> confluent_kafka.admin.AdminClient
    from confluent_kafka.admin import AdminClient

    return AdminClient({"bootstrap.servers": kafka.bootstrap_servers, "log_level": 3})


def ensure_topics(settings: Settings, specs: list[TopicSpec] | None = None, timeout: float = 30.0) -> dict[str, str]:
    """Create missing topics, raise partition counts, align configs. Returns name -> action."""
    from confluent_kafka import KafkaException
    from confluent_kafka.admin import (
        AlterConfigOpType,
        ConfigEntry,
        ConfigResource,
        NewPartitions,
        NewTopic,
    )

    specs = exchange_topics(settings) if specs is None else specs
    admin = admin_client(settings.kafka)
    try:
        existing = admin.list_topics(timeout=timeout).topics
    except KafkaException as exc:
        raise K2Error(
            f"cannot reach Kafka at {settings.kafka.bootstrap_servers}: {exc}",
            "start the embedded broker with `k2 kafka start`, or fix K2_KAFKA_BOOTSTRAP_SERVERS.",
        ) from exc
    actions: dict[str, str] = {}
    for spec in specs:
        if spec.name not in existing:
            new = NewTopic(spec.name, spec.partitions, spec.replication_factor, config=spec.config)
            _wait(admin.create_topics([new], operation_timeout=timeout), spec.name, "create")
            actions[spec.name] = "created"
            continue
        changed = []
        have = len(existing[spec.name].partitions)
        if have < spec.partitions:
            _wait(admin.create_partitions([NewPartitions(spec.name, spec.partitions)]), spec.name, "grow")
            changed.append(f"partitions {have}->{spec.partitions}")
        elif have > spec.partitions:
            log.warning(
                "topic.more_partitions_than_configured",
                topic=spec.name,
                have=have,
                configured=spec.partitions,
                note="Kafka cannot remove partitions; left as is",
            )
        resource = ConfigResource(ConfigResource.Type.TOPIC, spec.name)
        current = _wait(admin.describe_configs([resource]), spec.name, "describe")
        drift = {k: v for k, v in spec.config.items() if current[k].value != v}
        if drift:
            entries = [ConfigEntry(k, v, incremental_operation=AlterConfigOpType.SET) for k, v in drift.items()]
            _wait(
                admin.incremental_alter_configs(
                    [ConfigResource(ConfigResource.Type.TOPIC, spec.name, incremental_configs=entries)]
                ),
                spec.name,
                "configure",
            )
            changed.append("config " + ",".join(sorted(drift)))
        actions[spec.name] = ("updated: " + "; ".join(changed)) if changed else "exists"
    _wait_visible(admin, [name for name, action in actions.items() if action == "created"], timeout)
    for name, action in actions.items():
        log.info("topic.ensured", topic=name, action=action)
    return actions


def _wait_visible(admin, names: list[str], timeout: float) -> None:
    """Until the brokers' metadata lists the new topics: a KRaft broker applies the controller's
    record a moment after create_topics answered, and a producer asking before would not see them."""
    deadline = time.monotonic() + timeout
    while names and time.monotonic() < deadline:
        if all(n in admin.list_topics(timeout=timeout).topics for n in names):
            return
        time.sleep(0.1)


def _wait(futures: dict, topic: str, what: str):
    """Resolve the single future an AdminClient call returned, as a K2Error on failure."""
    (future,) = futures.values()
    try:
        return future.result()
    except Exception as exc:
        raise K2Error(
            f"Kafka refused to {what} topic {topic}: {exc}", "check the broker log and the K2_TOPIC_* settings."
        ) from exc
