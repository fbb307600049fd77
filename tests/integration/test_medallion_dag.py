"""A real Airflow run of k2_medallion over data that came the production way: simulator (with
faults) -> Kafka -> supervised Bronze stream -> Silver and Gold through spark-submit, with the
Great Expectations gates on."""

from __future__ import annotations

import datetime as dt
import json
import subprocess
import sys
from pathlib import Path

import pytest

from k2.exchanges import get_exchange
from k2.feeds.producer import TradeProducer
from k2.feeds.runner import run_simulated_feed
from k2.feeds.simulator import FaultPlan
from k2.settings import Settings
from k2.streams.state import StreamPaths, read_json
from k2.streams.supervisor import StreamSupervisor
from tests.helpers import wait_for
from tests.integration.test_bronze_streams import EXCHANGE, stream_settings  # noqa: F401 (fixture)

pytestmark = pytest.mark.integration


def airflow(settings: Settings, args: list[str], log_file: Path) -> int:
    from k2.airflow.services import AirflowServices

    services = AirflowServices(settings)
    services.migrate()
    with log_file.open("wb") as out:
        return subprocess.run([str(Path(sys.executable).parent / "airflow"), *args], env=services.environment(),
                              stdout=out, stderr=subprocess.STDOUT, timeout=900, check=False).returncode


def committed(settings: Settings) -> int:
    progress = read_json(StreamPaths.of(settings, EXCHANGE).progress) or {}
    return sum((progress.get("end_offsets") or {}).get(settings.topic_for(EXCHANGE), {}).values())


def test_medallion_dag_turns_streamed_bronze_into_silver_and_gold(stream_settings: Settings,  # noqa: F811
                                                                    tmp_path: Path) -> None:
    exchange = get_exchange(EXCHANGE)
    supervisor = StreamSupervisor(stream_settings, EXCHANGE)
    entries = []
    for burst, seed in enumerate((5, 6, 7), start=1):  # three bursts: three micro-batches, three files
        manifest = tmp_path / f"manifest-{seed}.json"
        summary = run_simulated_feed(TradeProducer(stream_settings, exchange), exchange, ["BTCUSDT", "ETHUSDT"],
                                     rate=0, count=1000, seed=seed, manifest_path=manifest,
                                     faults=FaultPlan(duplicate=0.02, malformed=0.02))
        assert summary.ok
        entries += json.loads(manifest.read_text())["entries"]
        supervisor.reconcile()  # starts the stream (once)
        wait_for(lambda n=burst: committed(stream_settings) == 1000 * n, 240, "the Bronze stream to commit the burst")

    now = dt.datetime.now(dt.UTC)
    conf = {"exchange": EXCHANGE, "start": (now - dt.timedelta(hours=1)).isoformat(),
            "end": (now + dt.timedelta(seconds=1)).isoformat()}
    log_file = tmp_path / "airflow.log"
    code = airflow(stream_settings, ["dags", "test", "k2_medallion", "-c", json.dumps(conf)], log_file)
    log = log_file.read_text(errors="replace")
    assert code == 0, log[-5000:]

    from k2.lake.catalog import load_catalog

    catalog = load_catalog(stream_settings)
    silver = catalog.load_table("silver.trades").scan().to_arrow()
    dead = catalog.load_table("silver.dead_letter").scan().to_arrow()
    malformed = [e for e in entries if e["fault"] == "malformed"]
    duplicates = [e for e in entries if e["fault"] == "duplicate"]
    assert silver.num_rows == 3000 - len(malformed) - len(duplicates) > 0
    assert dead.num_rows == len(malformed) > 0
    assert f"duplicates={len(duplicates)} dead_letters={len(malformed)}" in log
    minute = catalog.load_table("gold.ohlcv_1m").scan().to_arrow()
    assert sum(minute.column("trade_count").to_pylist()) == silver.num_rows
    day = catalog.load_table("gold.ohlcv_1d").scan().to_arrow()
    assert sorted(set(day.column("symbol").to_pylist())) == ["BTC-USDT", "ETH-USDT"]
    assert "quality silver: passed=True" in log and "quality 1m: passed=True" in log

    # maintenance of Bronze while its stream keeps running: fewer files, every offset still once
    bronze = catalog.load_table(f"bronze.{EXCHANGE}_trades")
    files_before = len(bronze.inspect.files())
    code = airflow(stream_settings, ["tasks", "test", "k2_maintenance", "maintain_bronze"], tmp_path / "maint.log")
    maintenance_log = (tmp_path / "maint.log").read_text(errors="replace")
    assert code == 0, maintenance_log[-5000:]
    bronze = catalog.load_table(f"bronze.{EXCHANGE}_trades")
    assert f"bronze.{EXCHANGE}_trades: data files {files_before} -> " in maintenance_log
    assert len(bronze.inspect.files()) < files_before
    offsets = bronze.scan(selected_fields=("kafka_partition", "kafka_offset")).to_arrow()
    assert offsets.num_rows == 3000 and len(set(zip(*offsets.to_pydict().values(), strict=True))) == 3000
