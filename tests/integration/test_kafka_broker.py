"""The embedded broker, started from K2's jars, used by a plain Kafka client that is not K2."""

from __future__ import annotations

import socket
import uuid
from pathlib import Path

import pytest
from confluent_kafka import Consumer, Producer
from confluent_kafka.admin import AdminClient, NewTopic

from k2.errors import K2Error
from k2.runtime.broker import LocalKafkaBroker
from k2.settings import Settings
from tests.conftest import make_settings

pytestmark = pytest.mark.integration


def test_status_reports_the_running_broker(kafka_broker: LocalKafkaBroker, settings: Settings) -> None:
    status = kafka_broker.status()
    assert status.running and status.pid
    assert status.bootstrap_servers == f"127.0.0.1:{settings.kafka.port}"
    assert (status.data_dir / "meta.properties").is_file()
    assert status.data_dir.is_relative_to(settings.home)


def test_independent_client_produces_and_consumes(kafka_broker: LocalKafkaBroker, settings: Settings) -> None:
    topic = f"roundtrip-{uuid.uuid4().hex[:8]}"
    bootstrap = settings.kafka.bootstrap_servers
    admin = AdminClient({"bootstrap.servers": bootstrap})  # must outlive its futures
    admin.create_topics([NewTopic(topic, 1, 1)])[topic].result(30)
    producer = Producer({"bootstrap.servers": bootstrap, "enable.idempotence": True})
    sent = [f"message-{i}".encode() for i in range(100)]
    for value in sent:
        producer.produce(topic, value=value, key=b"k", headers={"exchange": b"test"})
    assert producer.flush(30) == 0

    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": topic, "auto.offset.reset": "earliest"})
    consumer.subscribe([topic])
    received: list[bytes] = []
    try:
        for _ in range(300):
            msg = consumer.poll(0.5)
            if msg is not None and msg.error() is None:
                received.append(msg.value())
                assert msg.headers() == [("exchange", b"test")]
            if len(received) == len(sent):
                break
    finally:
        consumer.close()
    assert received == sent


def test_second_start_on_the_same_data_dir_is_refused(kafka_broker: LocalKafkaBroker, settings: Settings) -> None:
    with pytest.raises(K2Error, match="already runs"):
        LocalKafkaBroker(settings).start()
    # even when the pid file is lost, Kafka's own lock on the data directory still refuses
    pid_file = kafka_broker.pid_file
    saved = pid_file.read_text()
    pid_file.unlink()
    try:
        with pytest.raises(K2Error, match="holds the lock"):
            LocalKafkaBroker(settings).start()
    finally:
        pid_file.write_text(saved)
    assert kafka_broker.status().running


def test_busy_port_is_named_and_nothing_is_created(tmp_path: Path, jars) -> None:
    with socket.socket() as blocker:
        blocker.bind(("127.0.0.1", 0))
        blocker.listen()
        busy = blocker.getsockname()[1]
        s = make_settings(tmp_path / "home", kafka_port=busy)
        with pytest.raises(K2Error) as err:
            LocalKafkaBroker(s).start()
    assert f"127.0.0.1:{busy} is already in use" in err.value.cause
    assert "K2_KAFKA_PORT" in err.value.fix
    assert not (tmp_path / "home" / "kafka" / "data").exists()


def test_half_formatted_data_dir_is_reported_and_kept(tmp_path: Path, jars) -> None:
    s = make_settings(tmp_path)
    stray = s.kafka_dir / "data" / "__cluster_metadata-0" / "00000000000000000000.log"
    stray.parent.mkdir(parents=True)
    stray.write_bytes(b"partial")
    with pytest.raises(K2Error) as err:
        LocalKafkaBroker(s).start()
    assert "no meta.properties" in err.value.cause
    assert "k2 kafka reset" in err.value.fix
    assert stray.read_bytes() == b"partial"


def test_missing_java_is_reported(tmp_path: Path, jars) -> None:
    s = make_settings(tmp_path, java="/nonexistent/java")
    with pytest.raises(K2Error) as err:
        LocalKafkaBroker(s).start()
    assert "not found" in err.value.cause and "JDK 17" in err.value.fix


def test_stop_then_start_keeps_the_data(tmp_path: Path, jars) -> None:
    s = make_settings(tmp_path, kafka_stop_timeout_s=20.0)
    broker = LocalKafkaBroker(s)
    first = broker.start()
    try:
        admin = AdminClient({"bootstrap.servers": s.kafka.bootstrap_servers})
        admin.create_topics([NewTopic("kept", 1, 1)])["kept"].result(30)
        assert broker.stop() is True
        assert not broker.status().running
        assert broker.stop() is False  # idempotent
        second = broker.start()
        assert second.pid != first.pid
        assert "kept" in AdminClient({"bootstrap.servers": s.kafka.bootstrap_servers}).list_topics(timeout=10).topics
    finally:
        broker.stop()
    assert not broker.status().running
    assert not broker.data_dir_locked()


def test_cluster_ids_starting_with_a_dash_format(tmp_path: Path, jars, monkeypatch: pytest.MonkeyPatch) -> None:
    """A regression: such an id was once read as a command-line option by Kafka's storage tool."""
    import base64

    from k2.runtime import broker as broker_module

    dashed = next(i for i in iter(broker_module.new_cluster_id, None) if i.startswith("-"))
    monkeypatch.setattr(broker_module, "new_cluster_id", lambda: dashed)
    broker = LocalKafkaBroker(make_settings(tmp_path))
    try:
        broker.start()
        meta = (broker.data_dir / "meta.properties").read_text()
        assert f"cluster.id={dashed}" in meta
        assert len(base64.urlsafe_b64decode(dashed + "==")) == 16
    finally:
        broker.stop()
