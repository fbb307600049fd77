"""The lake and the streams' checkpoints on S3-compatible storage: an S3 server of the test's own
(moto's, from PyPI, on 127.0.0.1), K2_WAREHOUSE=s3://..., K2_STREAM_CHECKPOINTS=s3a://... and the
K2_S3_* settings. pyiceberg creates the tables there; a supervised Bronze stream writes Kafka's
records there through Iceberg's S3FileIO and checkpoints through Hadoop's S3A, stops, and resumes
from that checkpoint without a record twice; Silver and Gold are computed from Bronze there by the
batch job in a Spark process of its own. Nothing of the lake or the checkpoints is on the local disk."""

from __future__ import annotations

import datetime as dt
import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from k2.jvm import ensure_jars
from k2.lake.catalog import load_catalog
from k2.lake.names import SILVER_TRADES_ID, gold_id
from k2.settings import Settings
from k2.streams.state import StreamPaths
from k2.streams.supervisor import StreamSupervisor
from tests.helpers import free_port, wait_for
from tests.integration.stream_support import (
    EXCHANGE,
    BackgroundFeed,
    bronze_coordinates,
    ensure_topics_and_tables,
    isolated_installation,
    running_job,
)

pytestmark = pytest.mark.integration

BUCKET = "k2-lake"
KEY, SECRET = "k2-test-key", "k2-test-secret"  # moto accepts any; the clients must send them

# the batch as its tasks run it, in a Spark process of its own (local mode, S3FileIO)
BATCH = """
import datetime as dt, json, sys
from k2.medallion.interval import Interval
from k2.medallion.job import run
from k2.settings import load_settings
from k2.spark import build_spark_session

settings = load_settings()
spark = build_spark_session(settings, "k2-s3-test")
interval = Interval(sys.argv[1], dt.datetime.fromisoformat(sys.argv[2]), dt.datetime.fromisoformat(sys.argv[3]))
silver, gold = run(spark, settings, "silver", interval), run(spark, settings, "gold", interval)
spark.stop()
print(json.dumps({"new": silver.silver_new, "dead": silver.dead_letters, "duplicates": silver.duplicates}))
"""


@pytest.fixture
def s3_endpoint(tmp_path: Path) -> Iterator[str]:
    """moto's S3 server on loopback with an empty bucket; stopped after the test."""
    port = free_port()
    server = Path(sys.executable).with_name("moto_server")
    with (tmp_path / "moto.log").open("wb") as log:
        proc = subprocess.Popen([str(server), "-H", "127.0.0.1", "-p", str(port)], stdout=log, stderr=log)
    endpoint = f"http://127.0.0.1:{port}"
    client = s3_client(endpoint)
    try:
        wait_for(lambda: _answers(client), 60, "the S3 server to answer")
        client.create_bucket(Bucket=BUCKET)
        yield endpoint
    finally:
        proc.terminate()
        proc.wait(30)


def s3_client(endpoint: str):
    import boto3  # moto's dependency: a dev dependency too

    return boto3.client(
        "s3", endpoint_url=endpoint, aws_access_key_id=KEY, aws_secret_access_key=SECRET, region_name="us-east-1"
    )


def _answers(client) -> bool:
    try:
        client.list_buckets()
    except Exception:  # not up yet: connection refused
        return False
    return True


def objects(endpoint: str, prefix: str) -> list[str]:
    pages = s3_client(endpoint).get_paginator("list_objects_v2").paginate(Bucket=BUCKET, Prefix=prefix)
    return [o["Key"] for page in pages for o in page.get("Contents", [])]


@pytest.mark.timeout(900)
def test_bronze_silver_and_gold_on_s3(
    kafka_broker, settings: Settings, s3_endpoint: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    s3 = isolated_installation(
        tmp_path / "home",
        settings.kafka.port,
        settings.kafka.controller_port,
        monkeypatch,
        K2_WAREHOUSE=f"s3://{BUCKET}/warehouse",
        K2_S3_ENDPOINT=s3_endpoint,
        K2_S3_ACCESS_KEY_ID=KEY,
        K2_S3_SECRET_ACCESS_KEY=SECRET,
        K2_STREAM_CHECKPOINTS=f"s3a://{BUCKET}/checkpoints",
        K2_JARS_DIR=str(tmp_path / "jars"),  # with Iceberg's AWS bundle; the session's jars stay as they are
    )
    jars = ensure_jars(s3)
    # the s3 profile, chosen by the warehouse
    assert any("iceberg-aws-bundle" in jar.name for jar in jars.spark_connectors)
    ensure_topics_and_tables(s3)
    started = dt.datetime.now(dt.UTC)
    paths = StreamPaths.of(s3, EXCHANGE)
    supervisor = StreamSupervisor(s3, EXCHANGE)
    delivered = 0
    try:
        for run in range(2):  # the second run resumes from the checkpoint the first left on S3
            feed = BackgroundFeed(s3, rate=300)
            try:
                supervisor.clear_stop()
                supervisor.reconcile()  # launches the stream, as a scheduled check does
                wait_for(lambda: running_job(paths), 240, f"the stream's first batch on S3 (run {run + 1})")
            finally:
                summary = feed.finish()
            assert summary.ok and summary.delivery.delivered > 0
            delivered += summary.delivery.delivered
            wait_for(
                lambda n=delivered: len(bronze_coordinates(s3)) >= n,
                180,
                "Bronze on S3 to hold every record Kafka acked",
            )
            assert supervisor.request_stop(timeout_s=60)
    finally:
        supervisor.request_stop(timeout_s=60)
        supervisor.close()
    coordinates = bronze_coordinates(s3)
    assert len(coordinates) == len(set(coordinates)) == delivered, "a record missing or twice in Bronze"
    assert objects(s3_endpoint, f"checkpoints/{EXCHANGE}/commits/") and not (tmp_path / "home" / "checkpoints").exists()

    end = dt.datetime.now(dt.UTC) + dt.timedelta(minutes=1)
    batch = subprocess.run(
        [sys.executable, "-c", BATCH, EXCHANGE, (started - dt.timedelta(minutes=5)).isoformat(), end.isoformat()],
        env=os.environ,  # the K2_* settings above
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert batch.returncode == 0, batch.stderr[-5000:]
    report = json.loads(batch.stdout.strip().splitlines()[-1])
    catalog = load_catalog(s3.lake)
    silver = catalog.load_table(SILVER_TRADES_ID).scan().to_arrow()
    assert silver.num_rows == report["new"] > 0
    assert report["new"] + report["dead"] + report["duplicates"] == delivered
    bars = catalog.load_table(gold_id("1m")).scan(selected_fields=("trade_count",)).to_arrow()
    assert sum(bars.column("trade_count").to_pylist()) == silver.num_rows

    # every layer's data and metadata are objects in the bucket, and none is on the local disk
    for table in (f"bronze/{EXCHANGE}_trades", "silver/trades", "gold/ohlcv_1m"):
        keys = objects(s3_endpoint, f"warehouse/{table}/")
        assert any(k.endswith(".parquet") for k in keys) and any(k.endswith(".metadata.json") for k in keys), table
    assert not [p for p in (tmp_path / "home").rglob("*.parquet")]


def test_a_corrupt_checkpoint_on_s3_is_reported_with_its_location_and_left_alone(
    s3_endpoint: str, tmp_path: Path
) -> None:
    from k2.streams.checkpoint import checkpoint_problem

    settings = Settings.from_env(
        {
            "K2_HOME": str(tmp_path / "home"),
            "K2_S3_ENDPOINT": s3_endpoint,
            "K2_S3_ACCESS_KEY_ID": KEY,
            "K2_S3_SECRET_ACCESS_KEY": SECRET,
            "K2_STREAM_CHECKPOINTS": f"s3a://{BUCKET}/checkpoints",
        }
    )
    checkpoint = StreamPaths.of(settings, EXCHANGE).checkpoint
    assert checkpoint_problem(checkpoint, settings.lake) is None  # first start: nothing there yet
    client = s3_client(s3_endpoint)
    prefix = f"checkpoints/{EXCHANGE}"
    client.put_object(Bucket=BUCKET, Key=f"{prefix}/metadata", Body=b'{"id":"abc"}')
    client.put_object(Bucket=BUCKET, Key=f"{prefix}/offsets/0", Body=b'v1\n{"batchWatermarkMs":0}\n{"t":{"0":5}}\n')
    client.put_object(Bucket=BUCKET, Key=f"{prefix}/commits/0", Body=b'v1\n{"nextBatchWatermarkMs":0}\n')
    assert checkpoint_problem(checkpoint, settings.lake) is None
    client.put_object(Bucket=BUCKET, Key=f"{prefix}/offsets/1", Body=b'v1\n{"batchWatermarkMs":0\n\x00\x00')
    problem = checkpoint_problem(checkpoint, settings.lake)
    assert problem is not None and f"s3a://{BUCKET}/{prefix}/offsets/1 is corrupt" in problem.cause
    move = f"aws s3 mv --recursive --endpoint-url {s3_endpoint} s3://{BUCKET}/{prefix} s3://{BUCKET}/{prefix}.broken"
    assert move in problem.fix and "never deletes" in problem.fix
    assert f"{prefix}/offsets/1" in objects(s3_endpoint, prefix)  # reported, not touched
    client.put_object(Bucket=BUCKET, Key=f"{prefix}/metadata", Body=b"garbage")
    assert f"s3a://{BUCKET}/{prefix}/metadata is unreadable" in checkpoint_problem(checkpoint, settings.lake).cause
