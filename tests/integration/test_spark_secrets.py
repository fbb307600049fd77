"""Spark secrets reach a real spark-submit through the 0600 properties file, never its command line."""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import textwrap
import time
from pathlib import Path

import psutil
import pytest

from k2.spark import spark_job
from tests.conftest import make_settings

pytestmark = pytest.mark.integration

APP = textwrap.dedent(
    """
    import json, pathlib, sys, time
    from pyspark.sql import SparkSession

    spark = SparkSession.builder.getOrCreate()
    out = pathlib.Path(sys.argv[1])
    out.write_text(json.dumps(dict(spark.sparkContext.getConf().getAll())))
    release = out.with_suffix(".release")
    for _ in range(1200):  # hold the JVM up until the test has read every command line
        if release.exists():
            break
        time.sleep(0.1)
    """
)


def test_spark_submit_loads_the_secrets_it_never_shows(tmp_path: Path, jars) -> None:
    settings = make_settings(
        tmp_path / "home",
        catalog_uri="postgresql://k2:SENTINEL-PG@127.0.0.1:1/k2",
        warehouse="s3://k2-lake/warehouse",
        s3_secret_access_key="SENTINEL-S3",
    )
    (tmp_path / "app.py").write_text(APP)
    out = tmp_path / "conf.json"
    job = spark_job(settings, name="k2-secrets", application=tmp_path / "app.py", args=[str(out)])
    proc = subprocess.Popen(
        job.command("local[1]"),
        env={**os.environ, **job.env},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    try:
        written = _wait_for(out, proc, timeout_s=180)
        conf = json.loads(written)
        assert conf["spark.sql.catalog.k2.jdbc.password"] == "SENTINEL-PG"
        assert conf["spark.sql.catalog.k2.s3.secret-access-key"] == "SENTINEL-S3"
        command_lines = _command_lines(proc.pid)
        assert any("SparkSubmit" in line for line in command_lines)  # the JVM is among them
        assert not [line for line in command_lines if "SENTINEL" in line]
    finally:
        out.with_suffix(".release").touch()
        proc.communicate(timeout=60)
    assert proc.returncode == 0


def _command_lines(pid: int) -> list[str]:
    lines = []
    root = psutil.Process(pid)
    for p in [root, *root.children(recursive=True)]:
        with contextlib.suppress(psutil.Error):  # a launcher step that already exited
            lines.append(" ".join(p.cmdline()))
    return lines


def _wait_for(path: Path, proc: subprocess.Popen, timeout_s: float) -> str:
    """The file's text once the job wrote it; fails early if the job died."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if path.exists() and path.stat().st_size:
            return path.read_text()
        if proc.poll() is not None:
            raise AssertionError(f"spark-submit exited {proc.returncode}: {proc.stderr.read()[-2000:]}")
        time.sleep(0.2)
    raise AssertionError(f"{path} not written within {timeout_s:.0f}s")
