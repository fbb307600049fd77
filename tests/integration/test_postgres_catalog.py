"""The Iceberg JDBC catalog on a real PostgreSQL server (k2.runtime.postgres, from the distribution's
package): `k2 lake init` creates K2's tables there, Spark writes Bronze and runs Silver through it,
pyiceberg reads the same rows back; a SIGKILL of the server between commits loses nothing."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import uuid
from pathlib import Path

import pytest

from k2.lake.catalog import load_catalog, spark_catalog_conf
from k2.lake.tables import all_tables, bronze_table
from k2.medallion.interval import Interval
from k2.medallion.job import run
from k2.runtime.postgres import LocalPostgres
from k2.settings import Settings
from tests.conftest import make_settings
from tests.integration.medallion_fixtures import at, binance, write_bronze

pytestmark = pytest.mark.integration

H10 = Interval("binance", at("2026-11-20T10:00:00"), at("2026-11-20T11:00:00"))
H11 = Interval("binance", at("2026-11-20T11:00:00"), at("2026-11-20T12:00:00"))


def no_gate(layer, frame, interval):
    return {"gate": "off in this test"}


@pytest.fixture
def pg_lake(spark, postgres: LocalPostgres, tmp_path: Path) -> Settings:
    """A K2 installation whose catalog is the server's `catalog` database, its tables made by
    `k2 lake init` (a process of its own, configured as an operator would: K2_* variables)."""
    settings = make_settings(
        tmp_path / "home", catalog_name=f"k2pg{uuid.uuid4().hex[:6]}", catalog_uri=postgres.uri("catalog")
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("K2_")}
    env.update(
        K2_HOME=str(settings.home), K2_CATALOG_NAME=settings.lake.catalog_name, K2_CATALOG_URI=postgres.uri("catalog")
    )
    result = subprocess.run(
        [sys.executable, "-m", "k2.cli", "lake", "init"], env=env, capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert postgres.password() not in result.stdout + result.stderr  # the URL's password never printed
    for key, value in spark_catalog_conf(settings.lake).items():
        spark.conf.set(key, value)
    return settings


def _catalog_rows(postgres: LocalPostgres) -> set[str]:
    """The tables the PostgreSQL database itself lists (Iceberg's JDBC catalog table)."""
    with postgres.connect("catalog") as conn, conn.cursor() as cur:
        cur.execute("SELECT table_namespace || '.' || table_name FROM iceberg_tables")
        return {row[0] for row in cur.fetchall()}


def _bronze_offsets(settings: Settings) -> list[tuple[int, int]]:
    table = load_catalog(settings.lake).load_table(bronze_table("binance").identifier)  # a fresh pyiceberg client
    rows = table.scan(selected_fields=("kafka_partition", "kafka_offset")).to_arrow().to_pylist()
    return sorted((r["kafka_partition"], r["kafka_offset"]) for r in rows)


def _silver_trade_ids(settings: Settings) -> list[str]:
    rows = load_catalog(settings.lake).load_table("silver.trades").scan(selected_fields=("trade_id",)).to_arrow()
    return sorted(rows.column("trade_id").to_pylist())


def _records(first_id: int, hour: int, offsets: range) -> list[tuple]:
    ts = f"2026-11-20T{hour}:00:40"
    return [(0, o, ts, binance(first_id + o, "100.00", "1.00000", f"2026-11-20T{hour}:00:05")) for o in offsets]


def test_spark_and_pyiceberg_share_a_postgresql_catalog_through_a_server_crash(
    spark, postgres: LocalPostgres, pg_lake: Settings
) -> None:
    settings = pg_lake
    expected_tables = {spec.identifier for spec in all_tables(settings)}
    assert expected_tables <= _catalog_rows(postgres)  # k2 lake init wrote them to PostgreSQL, not elsewhere

    write_bronze(spark, settings, "binance", _records(1000, 10, range(5)))
    silver = run(spark, settings, "silver", H10, no_gate)
    assert silver.silver_new == 5
    assert _bronze_offsets(settings) == [(0, o) for o in range(5)]
    assert _silver_trade_ids(settings) == [str(1000 + o) for o in range(5)]

    postgres.kill()  # SIGKILL of the server and every backend: no shutdown checkpoint
    assert not postgres.status().running
    with pytest.raises(Exception) as outage:
        write_bronze(spark, settings, "binance", _records(1000, 11, range(5, 8)))  # no catalog: no commit
    # Iceberg's JDBC catalog cannot load the table: the write fails before writing or committing anything
    assert re.search(r"org\.apache\.iceberg\.jdbc\.UncheckedSQLException", str(outage.value)), outage.value

    postgres.ensure_running()  # crash recovery replays the WAL
    assert _bronze_offsets(settings) == [(0, o) for o in range(5)]  # all committed, nothing of the failed write
    assert _silver_trade_ids(settings) == [str(1000 + o) for o in range(5)]

    write_bronze(spark, settings, "binance", _records(1000, 11, range(5, 8)))  # the same Spark session goes on
    assert run(spark, settings, "silver", H11, no_gate).silver_new == 3
    assert _bronze_offsets(settings) == [(0, o) for o in range(8)]
    assert _silver_trade_ids(settings) == [str(1000 + o) for o in range(8)]
    spark.sql(f"REFRESH TABLE {settings.lake.catalog_name}.silver.trades")
    assert spark.table(f"{settings.lake.catalog_name}.silver.trades").count() == 8  # and Spark agrees
