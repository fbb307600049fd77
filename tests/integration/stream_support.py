"""What the tests of running Bronze streams share: an isolated K2 installation on the session's
broker (configured through K2_* variables, which launched processes inherit), simulated load, and
the condition that a job runs."""

from __future__ import annotations

import datetime as dt
import logging
import os
import subprocess
import sys
import threading
import uuid
from pathlib import Path

import pytest

from k2.exchanges import get_exchange
from k2.feeds.producer import TradeProducer
from k2.feeds.runner import run_simulated_feed
from k2.kafka.topics import ensure_topics
from k2.lake.catalog import load_catalog
from k2.lake.tables import all_tables, ensure_tables
from k2.runtime.spark_connect import LocalSparkConnectServer
from k2.settings import Settings, load_settings
from k2.streams.control import StreamControl, file_control
from k2.streams.state import StreamPaths
from k2.streams.supervisor import StreamSupervisor
from tests.helpers import free_port
from tests.integration.medallion_fixtures import binance

EXCHANGE = "binance"


def isolated_installation(
    home: Path, kafka_port: int, controller_port: int, monkeypatch: pytest.MonkeyPatch, **overrides: str
) -> Settings:
    """K2_* variables (which launched processes inherit) for an installation of its own: home,
    topic, tables, Airflow port; fast supervision. Returns its settings."""
    env = {
        "K2_HOME": str(home),
        "K2_KAFKA_PORT": str(kafka_port),
        "K2_KAFKA_CONTROLLER_PORT": str(controller_port),
        "K2_TOPIC_TEMPLATE": f"bronze-{uuid.uuid4().hex[:8]}.{{exchange}}.raw",
        "K2_TOPIC_PARTITIONS": "2",
        "K2_EXCHANGES": EXCHANGE,
        "K2_SPARK_UI_ENABLED": "false",
        "K2_STREAM_DRIVER_MEMORY": "768m",
        "K2_STREAM_CHECK_INTERVAL_S": "1",
        "K2_STREAM_BACKOFF_BASE_S": "1",
        "K2_STREAM_STALL_TIMEOUT_S": "20",
        "K2_STREAM_START_TIMEOUT_S": "150",
        "K2_STREAM_LEASE_TTL_S": "600",
        "K2_LOG_FORMAT": "logfmt",
        "K2_AIRFLOW_PORT": str(free_port()),
        "K2_AIRFLOW_LOG_SERVER_PORT": str(free_port()),
        "K2_SPARK_CONNECT_PORT": str(free_port()),
        **overrides,
    }
    for key in [k for k in os.environ if k.startswith("K2_")]:
        monkeypatch.delenv(key)
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    return load_settings()


def ensure_topics_and_tables(settings: Settings) -> None:
    ensure_topics(settings)
    ensure_tables(load_catalog(settings.lake), all_tables(settings))


@pytest.fixture
def stream_settings(kafka_broker, settings: Settings, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Settings:
    """A K2 installation of its own (home, topic, tables) on the session's broker."""
    scoped = isolated_installation(tmp_path / "home", settings.kafka.port, settings.kafka.controller_port, monkeypatch)
    ensure_topics_and_tables(scoped)
    yield scoped
    supervisor = StreamSupervisor(scoped, EXCHANGE)
    supervisor.request_stop(timeout_s=30)
    supervisor.close()
    LocalSparkConnectServer(scoped).stop()  # started by the first batch task that ran here, if any


class BackgroundFeed:
    """Simulated load on the stream's topic until stopped. With ``client_log``, the Kafka client's
    own account of its connections, leaders and producer id goes to that file (for a test whose
    feed must outlive a broker restart: what it shows is what a failure needs)."""

    PROGRESS_S = 10  # a delivery timeline in the test's log
    JOIN_S = TradeProducer.CLOSE_TIMEOUT_S + 30  # the producer's flush at close, and a margin

    def __init__(self, settings: Settings, rate: float, client_log: Path | None = None) -> None:
        self.stop_event = threading.Event()
        self.summary = None
        exchange = get_exchange(EXCHANGE)
        logging_config, self._log_file = _client_logging(client_log)
        self.producer = TradeProducer(settings, exchange, report_successes=False, **logging_config)
        self.thread = threading.Thread(
            target=lambda: setattr(
                self,
                "summary",
                run_simulated_feed(
                    self.producer,
                    exchange,
                    ["BTCUSDT", "ETHUSDT"],
                    rate=rate,
                    stop=self.stop_event,
                    progress_every_s=self.PROGRESS_S,
                ),
            ),
            daemon=True,
        )
        self.thread.start()

    def finish(self):
        """The feed's summary, once its producer has flushed (or counted what it could not deliver)."""
        self.stop()
        if self.summary is None:
            stats = self.producer.stats
            raise AssertionError(
                f"the feed did not finish within {self.JOIN_S:.0f} s: produced {stats.produced}, "
                f"failed {stats.failed} {stats.errors}, still queued {self.producer.queue_length()}"
            )
        return self.summary

    def stop(self) -> None:
        """Stops the feed and waits for its flush, without judging it (for cleanup)."""
        self.stop_event.set()
        self.thread.join(self.JOIN_S)
        if self._log_file is not None and not self.thread.is_alive():  # the producer has closed
            self._log_file.close()


def _client_logging(path: Path | None) -> tuple[dict, logging.Handler | None]:
    """The producer's settings that send its debug log to ``path``, and the file's handler."""
    if path is None:
        return {}, None
    logger = logging.getLogger(f"k2.tests.kafka_client.{path}")
    handler = logging.FileHandler(path)
    handler.setFormatter(logging.Formatter("%(asctime)s %(message)s"))
    logger.addHandler(handler)
    logger.setLevel(logging.DEBUG)
    logger.propagate = False
    return {"logger": logger, "log_level": 7, "debug": "broker,topic,metadata,eos"}, handler


def running_job(where: StreamPaths | StreamControl, after: float = 0.0) -> dict | None:
    """The status of a job that runs and completed a batch after ``after``, from its files or from
    the control store of a deployment on PostgreSQL."""
    control = file_control(where) if isinstance(where, StreamPaths) else where
    status = control.read("status") or {}
    progress = control.read("progress") or {}
    if status.get("state") == "running" and progress.get("completed_at", 0) > max(after, status["started_at"]):
        return status
    return None


def write_bronze_ingested(settings: Settings, rows: list[tuple[int, dt.datetime]]) -> None:
    """Bronze rows as the stream would have written them, without running it: (trade id, ingested
    at), each a Binance trade stamped a second before it arrived."""
    import pyarrow as pa

    table = load_catalog(settings.lake).load_table(f"bronze.{EXCHANGE}_trades")
    records = [
        {
            "kafka_topic": settings.topic_for(EXCHANGE),
            "kafka_partition": 0,
            "kafka_offset": offset,
            "kafka_timestamp": when - dt.timedelta(seconds=1),
            "kafka_timestamp_type": 0,
            "key": b"BTCUSDT",
            "value": binance(trade, "100.5", "0.25", (when - dt.timedelta(seconds=2)).strftime("%Y-%m-%dT%H:%M:%S")),
            "headers": [],
            "ingested_at": when,
        }
        for offset, (trade, when) in enumerate(rows)
    ]
    table.append(pa.Table.from_pylist(records, schema=table.schema().as_arrow()))


def mark_stream_idle(settings: Settings, exchange: str = EXCHANGE) -> None:
    """What an idle stream's listener writes after a trigger that found no data: the batch's sensor
    then knows Bronze holds everything ingested before now (k2.medallion.settle), without a stream
    running (its own tests run it: test_bronze_streams.py)."""
    paths = StreamPaths.of(settings, exchange)
    paths.idle.parent.mkdir(parents=True, exist_ok=True)
    now = dt.datetime.now(dt.UTC)
    paths.idle.write_text(f'{{"idle_at": {now.timestamp()}, "trigger_at": "{now.isoformat()}", "query_id": "t"}}')


def bronze_coordinates(settings: Settings) -> list[tuple[int, int]]:
    table = load_catalog(settings.lake).load_table(f"bronze.{EXCHANGE}_trades")
    arrow = table.scan(selected_fields=("kafka_partition", "kafka_offset")).to_arrow()
    return list(zip(arrow["kafka_partition"].to_pylist(), arrow["kafka_offset"].to_pylist(), strict=True))


class Checks:
    """The supervisor DAG's schedule without Airflow (whose scheduled checks `test_cli`'s `k2 up`
    proves): one `k2 stream check` process every ``every_s``, each exiting as a DAG run's does, so
    the stream it launches outlives it. ``stop`` returns what they printed, alerts included."""

    def __init__(self, every_s: float) -> None:
        self.every_s, self.outputs = every_s, []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        command = [sys.executable, "-m", "k2.cli", "stream", "check", "--exchange", EXCHANGE]
        while not self._stop.wait(self.every_s):
            done = subprocess.run(command, capture_output=True, text=True, timeout=120, check=False)
            self.outputs.append(done.stdout + done.stderr)

    def stop(self) -> str:
        self._stop.set()
        self._thread.join(150)
        return "\n".join(self.outputs)
