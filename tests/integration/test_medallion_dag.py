"""k2_medallion and k2_maintenance in a real Airflow (scheduler, triggerer, LocalExecutor,
spark-submit) over data that came the production way: Kafka -> supervised Bronze stream. Three
bursts stamped in three past hours (a producer replaying, or a clock off by hours) arrive now. An
Airflow backfill of those three hours finds nothing ingested then and settles them without Spark;
a run over this hour takes all three bursts, wherever their stamps point. Each run overruns a
(deliberately tiny) deadline and fires its deadline alert once to a real webhook, and maintenance
compacts Bronze."""

from __future__ import annotations

import datetime as dt
import json
import os
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from k2.lake.catalog import load_catalog
from k2.monitoring.metrics import StreamMetrics
from k2.monitoring.prometheus import write_textfile
from k2.monitoring.scrape_auth import scrape_token
from k2.quality.docs import data_docs_dir
from k2.runtime.airflow import AirflowServices
from k2.runtime.airflow_api import AirflowApi
from k2.settings import Settings
from k2.streams.state import StreamPaths, read_json
from k2.streams.supervisor import StreamSupervisor
from tests.fakes.webhook import WebhookReceiver
from tests.helpers import wait_for
from tests.integration.medallion_fixtures import binance
from tests.integration.stream_support import EXCHANGE, mark_stream_idle, write_bronze_ingested

pytestmark = pytest.mark.integration

TRADES_PER_HOUR = 20


def committed(settings: Settings) -> int:
    progress = read_json(StreamPaths.of(settings, EXCHANGE).progress) or {}
    return sum((progress.get("end_offsets") or {}).get(settings.topic_for(EXCHANGE), {}).values())


def produce_hour(settings: Settings, hour: dt.datetime, first_id: int) -> int:
    """TRADES_PER_HOUR trades over two symbols, one exact duplicate and one malformed message,
    with Kafka timestamps inside the hour. Returns the number of records."""
    from confluent_kafka import Producer

    records = []
    for i in range(TRADES_PER_HOUR):
        when = hour + dt.timedelta(minutes=2 * i, seconds=5)
        symbol = ("BTCUSDT", "ETHUSDT")[i % 2]
        payload = binance(
            first_id + i,
            f"{100 + i}.5",
            "0.25",
            when.strftime("%Y-%m-%dT%H:%M:%S"),
            symbol=symbol,
            buyer_maker=i % 3 == 0,
        )
        records.append((when + dt.timedelta(seconds=1), payload, symbol))
    records.append((hour + dt.timedelta(minutes=50), records[0][1], "BTCUSDT"))  # the feed sent it twice
    records.append((hour + dt.timedelta(minutes=51), b'{"stream":"btcusdt@trade","data":{"e":"tra', "BTCUSDT"))
    producer = Producer({"bootstrap.servers": settings.kafka.bootstrap_servers})
    for when, payload, symbol in records:
        producer.produce(settings.topic_for(EXCHANGE), payload, symbol.encode(), timestamp=int(when.timestamp() * 1000))
    assert producer.flush(30) == 0
    return len(records)


def finished(api: AirflowApi, expected: int) -> dict[str, str] | None:
    """The succeeded runs once there are ``expected`` (polled through the REST API: an `airflow` CLI
    process costs 4 s of CPU, taken from the tasks under test)."""
    runs = api.dag_runs("k2_medallion")
    failed = [r for r, state in runs.items() if state == "failed"]
    assert not failed, f"k2_medallion runs failed: {failed}; logs in {api.airflow.log_dir}"
    done = {r: state for r, state in runs.items() if state == "success"}
    return done if len(done) >= expected else None


class WithoutScheduledRuns(AirflowServices):
    """Airflow whose scheduler adds no run of its own (`use_job_schedule`): the test counts the
    backfilled and triggered runs, and when the hour turns during the test the scheduler would add
    one for the hour that just ended (a CI run started at 05:59 had it)."""

    def environment(self) -> dict[str, str]:
        return {**super().environment(), "AIRFLOW__SCHEDULER__USE_JOB_SCHEDULE": "False"}


@pytest.mark.timeout(1500)
def test_backfill_deadline_alerts_and_maintenance_through_airflow(
    stream_settings: Settings, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    this_hour = dt.datetime.now(dt.UTC).replace(minute=0, second=0, microsecond=0)
    hours = [this_hour - dt.timedelta(hours=n) for n in (3, 2, 1)]  # the last three hours
    supervisor = StreamSupervisor(stream_settings, EXCHANGE)
    produced = 0
    for n, hour in enumerate(hours):  # one burst per hour, each its own micro-batch and file
        produced += produce_hour(stream_settings, hour, first_id=1000 * (n + 1))
        supervisor.reconcile()  # starts the stream (once)
        wait_for(lambda p=produced: committed(stream_settings) == p, 240, "the Bronze stream to commit the burst")
    # the stream keeps running (idle): the batch's sensor waits for its first trigger after a run's end
    with WebhookReceiver() as hook:
        monkeypatch.setenv("K2_ALERT_WEBHOOK_URL", hook.url)  # Airflow's processes inherit K2_* settings
        monkeypatch.setenv("K2_MEDALLION_DEADLINE_MIN", "0.05")  # 3 s: every run overruns it
        monkeypatch.setenv("K2_SPARK_POOL_SLOTS", "2")  # two Spark jobs at a time: JVM start-ups overlap
        monkeypatch.setenv("K2_BATCH_INGEST_GRACE_S", "0")  # the backfilled hours end before the bursts came
        airflow = WithoutScheduledRuns(stream_settings)
        airflow.start()
        api = AirflowApi.of(airflow)
        try:
            # Airflow's own backfill: one run per hourly data interval, logical dates = interval starts
            airflow.cli(
                "backfill",
                "create",
                "--dag-id",
                "k2_medallion",
                "--from-date",
                hours[0].isoformat(),
                "--to-date",
                hours[-1].isoformat(),
                "--max-active-runs",
                "2",
            )
            api.unpause("k2_medallion")  # tasks of paused DAGs never start
            wait_for(
                lambda: len([r for r in (finished(api, 3) or {}) if r.startswith("backfill__")]) == 3,
                900,
                "three backfill runs to succeed",
                interval=2,
            )
            catalog = load_catalog(stream_settings.lake)
            assert catalog.load_table("silver.trades").scan().to_arrow().num_rows == 0
            ledger = catalog.load_table("ops.medallion_ledger").scan().to_arrow().to_pylist()
            assert sorted((e["layer"], e["range_start"], e["bronze_rows"]) for e in ledger) == sorted(
                (layer, h, 0) for h in hours for layer in ("silver", "gold")
            )
            # this hour's run, triggered by hand: everything the stream ingested, stamps regardless
            conf = {"start": this_hour.isoformat(), "end": dt.datetime.now(dt.UTC).isoformat()}
            api.trigger("k2_medallion", "manual__this_hour", conf)
            wait_for(lambda: "manual__this_hour" in (finished(api, 4) or {}), 900, "this hour's run", interval=2)

            silver = catalog.load_table("silver.trades").scan().to_arrow()
            dead = catalog.load_table("silver.dead_letter").scan().to_arrow()
            assert silver.num_rows == 3 * TRADES_PER_HOUR and dead.num_rows == 3
            assert set(dead.column("reason").to_pylist()) == {"malformed_json"}
            bars = catalog.load_table("gold.ohlcv_1h").scan().to_arrow().to_pylist()
            assert sorted((b["bar_start"], b["symbol"], b["trade_count"]) for b in bars) == sorted(
                (h, s, TRADES_PER_HOUR // 2) for h in hours for s in ("BTC-USDT", "ETH-USDT")
            )
            minute_bars = catalog.load_table("gold.ohlcv_1m").scan().to_arrow()
            assert minute_bars.num_rows == 3 * TRADES_PER_HOUR  # one trade every two minutes
            runs = api.dag_runs("k2_medallion")
            assert sorted(runs) == sorted([*(r for r in runs if r.startswith("backfill__")), "manual__this_hour"])

            # one deadline alert per overrunning run, through the webhook channel, never repeated
            wait_for(lambda: len(hook.alerts("deadline k2_medallion")) >= 4, 120, "four deadline alerts", interval=1)
            messages = [a["message"] for a in hook.alerts("deadline k2_medallion")]
            assert sorted(m.split()[1] for m in messages) == sorted(runs), messages
            assert all("past its deadline" in m for m in messages)

            # the API server serves the monitoring figures to Prometheus (k2/airflow/plugin.py)
            write_textfile(stream_settings, [StreamMetrics(EXCHANGE, time.time(), "running", 60.0, lag_s=1.5)], [])
            scraper = {"Authorization": f"Bearer {scrape_token(stream_settings)}"}
            metrics = urllib.request.Request(f"{airflow.url}/k2/metrics", headers=scraper)
            with urllib.request.urlopen(metrics, timeout=30) as response:
                assert f'k2_stream_lag_s{{exchange="{EXCHANGE}"}} 1.5' in response.read().decode()
        finally:
            airflow.stop()
            supervisor.request_stop(timeout_s=60)

    # maintenance of Bronze (concurrent writers: tests/integration/test_maintenance.py)
    bronze = catalog.load_table(f"bronze.{EXCHANGE}_trades")
    files_before = len(bronze.inspect.files())
    result = airflow.cli("tasks", "test", "k2_maintenance", "maintain_bronze", check=False)
    output = result.stdout + result.stderr
    assert result.returncode == 0, output[-5000:]
    assert f"bronze.{EXCHANGE}_trades: data files {files_before} -> " in output
    bronze = catalog.load_table(f"bronze.{EXCHANGE}_trades")
    assert len(bronze.inspect.files()) < files_before
    offsets = bronze.scan(selected_fields=("kafka_partition", "kafka_offset")).to_arrow()
    assert offsets.num_rows == produced
    assert len(set(zip(*offsets.to_pydict().values(), strict=True))) == produced

    # the monitoring task through Airflow, its thresholds from the Airflow Variable, validated on load
    airflow.cli("variables", "set", "k2_alert_thresholds", json.dumps({"latency_p99_s": {"warnig": 5}}))
    bad = airflow.cli("tasks", "test", "k2_monitoring", "measure_and_alert", check=False)
    # (`tasks test` exits 0 whatever the task did: its log says)
    assert "Task failed" in bad.stdout + bad.stderr
    assert "unknown key latency_p99_s.warnig" in bad.stdout + bad.stderr
    airflow.cli(
        "variables", "set", "k2_alert_thresholds", json.dumps({"freshness_s": {"warning": 86400, "critical": None}})
    )
    good = airflow.cli("tasks", "test", "k2_monitoring", "measure_and_alert", check=False)
    output = good.stdout + good.stderr
    assert good.returncode == 0 and "Task failed" not in output, output[-5000:]
    assert f"stream={EXCHANGE} state=stopped" in output
    # each hour had 1 malformed record in 22 items: above the 1% default warning
    assert f"[K2 WARNING] monitor {EXCHANGE} dead_letter_ratio" in output
    latest = read_json(stream_settings.monitoring_dir / "latest.json")["metrics"][0]
    assert latest["lag_messages"] == 0 and round(latest["dead_letter_ratio"], 4) == round(1 / 22, 4)

    # housekeeping: the batch's Great Expectations results, made 2 days old, go with a 1-day retention
    # and the Data Docs index is rebuilt without them; Airflow's DB loses the runs above
    results = stream_settings.home / "quality" / "gx" / "uncommitted" / "validations"
    stale = list(results.rglob("*.json"))
    assert len(stale) >= 4
    two_days_ago = time.time() - 2 * 86400
    for path in stale:
        os.utime(path, (two_days_ago, two_days_ago))
    monkeypatch.setenv("K2_MAINTENANCE_QUALITY_RETENTION_DAYS", "1")
    monkeypatch.setenv("K2_MAINTENANCE_AIRFLOW_DB_RETENTION_DAYS", "0.0001")  # 9 s
    runs_before = len(airflow.dag_runs("k2_medallion"))
    assert runs_before >= 4
    for chore in ("quality", "logs"):
        done = airflow.cli("tasks", "test", "k2_maintenance", f"housekeeping_{chore}", check=False)
        output = done.stdout + done.stderr
        assert done.returncode == 0 and "Task failed" not in output, output[-5000:]
    # the DB chore as a worker runs it: Airflow 3 blocks a task's own metadata-DB access (`tasks test` does not)
    clean = subprocess.run([sys.executable, "-c", CLEAN_DB_AS_A_WORKER], env=airflow.environment(), **CAPTURE)
    assert clean.returncode == 0 and "older than" in clean.stdout, clean.stdout[-3000:] + clean.stderr[-3000:]
    assert not [p for p in stale if p.exists()]
    index = data_docs_dir(stream_settings) / "index.html"
    assert index.is_file() and time.time() - index.stat().st_mtime < 300
    assert len(airflow.dag_runs("k2_medallion")) <= 1  # Airflow keeps each DAG's latest scheduled run


CAPTURE = {"capture_output": True, "text": True, "check": False, "timeout": 300}
CLEAN_DB_AS_A_WORKER = """
import airflow.settings
from airflow.sdk.execution_time.supervisor import block_orm_access
block_orm_access()  # what Airflow's task supervisor does before a task runs
from k2.airflow.operators.housekeeping import HousekeepingOperator
print(HousekeepingOperator(task_id="housekeeping_airflow_db", chore="airflow_db").execute({}))
"""


@pytest.mark.timeout(900)
def test_hours_ingested_while_the_dag_was_paused_are_processed_by_the_first_run_after_unpausing(
    stream_settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    from k2.medallion import ledger

    this_hour = dt.datetime.now(dt.UTC).replace(minute=0, second=0, microsecond=0)
    hours = [this_hour - dt.timedelta(hours=n) for n in (4, 3, 2, 1)]
    # hour -4 was processed before the pause; -3, -2 and -1 were ingested while k2_medallion was paused
    write_bronze_ingested(stream_settings, [(n, h + dt.timedelta(minutes=10)) for n, h in enumerate(hours)])
    for layer in ("silver", "gold"):
        ledger.record(stream_settings.lake, ledger.LedgerEntry(layer, EXCHANGE, hours[0], hours[1], False, 1, 1, 1))
    mark_stream_idle(stream_settings)  # the sensor's proof that Bronze is settled, without a stream's JVM
    monkeypatch.setenv("K2_BATCH_INGEST_GRACE_S", "0")
    airflow = AirflowServices(stream_settings)
    airflow.start()
    api = AirflowApi.of(airflow)
    try:
        api.unpause("k2_medallion")  # catchup=False: one run, the latest interval
        done = wait_for(lambda: finished(api, 1), 600, "the first run after unpausing", interval=2)
        # not one per paused hour; a later hour's run joins only if an hour turned during the test
        hours_turned = (dt.datetime.now(dt.UTC) - this_hour) // dt.timedelta(hours=1)
        runs = api.dag_runs("k2_medallion")
        assert 1 <= len(runs) <= 1 + hours_turned and all(r.startswith("scheduled__") for r in runs), runs
        assert next(iter(done)).startswith("scheduled__")
    finally:
        airflow.stop()
    catalog = load_catalog(stream_settings.lake)
    trades = catalog.load_table("silver.trades").scan().to_arrow()
    assert sorted(int(t) for t in trades.column("trade_id").to_pylist()) == [1, 2, 3]  # 0 was processed before
    covered = ledger.covered(stream_settings.lake, "gold", EXCHANGE)
    assert covered and min(s for s, _ in covered) == hours[0] and max(e for _, e in covered) >= this_hour
    bars = catalog.load_table("gold.ohlcv_1h").scan().to_arrow().to_pylist()
    assert sorted(b["bar_start"] for b in bars) == hours[1:]
