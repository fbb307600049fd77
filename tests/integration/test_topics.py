from __future__ import annotations

import pytest

from k2.kafka.topics import TopicSpec, admin_client, ensure_topics, exchange_topics
from k2.settings import Settings

pytestmark = pytest.mark.integration


def test_exchange_topics_are_created_once(kafka_broker, settings: Settings) -> None:
    first = ensure_topics(settings)
    again = ensure_topics(settings)
    names = [t.name for t in exchange_topics(settings)]
    assert names == ["market.crypto.trades.binance.raw", "market.crypto.trades.kraken.raw"]
    assert set(first.values()) <= {"created", "exists"}
    assert again == dict.fromkeys(names, "exists")
    meta = admin_client(settings.kafka).list_topics(timeout=10).topics
    for name in names:
        assert len(meta[name].partitions) == settings.topics.partitions


def test_partitions_grow_and_config_drift_is_corrected(kafka_broker, settings: Settings) -> None:
    spec = TopicSpec("drift-test", 1, 1, {"retention.ms": "3600000", "compression.type": "lz4"})
    assert ensure_topics(settings, [spec]) == {"drift-test": "created"}
    grown = TopicSpec("drift-test", 3, 1, {"retention.ms": "7200000", "compression.type": "lz4"})
    action = ensure_topics(settings, [grown])["drift-test"]
    assert "partitions 1->3" in action and "retention.ms" in action
    assert ensure_topics(settings, [grown]) == {"drift-test": "exists"}
    assert len(admin_client(settings.kafka).list_topics(timeout=10).topics["drift-test"].partitions) == 3
