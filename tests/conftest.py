"""Session-wide real services for the integration tests: K2's jars, a Kafka broker started from
them on free loopback ports, a fresh Iceberg catalog and warehouse, and one local SparkSession.
Everything lives in a temporary K2_HOME, so tests never touch a developer's own .k2/ state."""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from k2.settings import Settings
from tests.helpers import free_port

# The suite runs on two workers (pyproject: -n 2), in two lanes. The integration tests run one after
# another on one worker: whole stacks, streams' latency and supervision deadlines want the machine as
# they found it when serial. Beside them, on the other: the unit, DAG and Spark tests, and the
# integration modules that mostly wait on Airflow's scheduler and spark-submit, with generous
# deadlines, or on a server of their own. A serial run left a third of the two cores idle (vmstat
# over a CI run, 2026-12-07); with only the first two modules beside, the second lane ran dry 24
# minutes into a 37-minute run.
BESIDE_THE_SERVICE_TESTS = (
    "test_medallion_dag.py",
    "test_wheel_install.py",
    "test_query.py",
    "test_s3_storage.py",
    "test_spark_connect.py",
)


def work_unit(nodeid: str) -> str:
    """The tests one worker runs in order: the service tests, each module beside them (a module
    fixture such as the wheel's installation is built once), the Spark tests (one local
    SparkSession); any other test alone."""
    path = nodeid.split("::", 1)[0]  # tests/<lane>/<name>
    *_, lane, name = ["", "", *path.split("/")]
    if lane == "integration":
        return path if name in BESIDE_THE_SERVICE_TESTS else "tests/integration"
    return "tests/spark" if lane == "spark" else nodeid


def pytest_xdist_make_scheduler(config: pytest.Config, log) -> object:
    """xdist's scope scheduling, by ``work_unit`` (its xdist_group marks no longer reach the scheduler
    under pytest 9.2: xdist 3.8 renames ``item._nodeid``, which pytest 9.2 no longer reads)."""
    from xdist.scheduler import LoadScopeScheduling

    class Lanes(LoadScopeScheduling):
        def _split_scope(self, nodeid: str) -> str:
            return work_unit(nodeid)

    return Lanes(config, log)


def pytest_configure(config: pytest.Config) -> None:
    # py4j says goodbye at garbage collection, after pytest closed the streams logging writes to
    logging.getLogger("py4j").setLevel(logging.WARNING)


def make_settings(home: Path, **overrides) -> Settings:
    """Settings isolated from the caller's K2_* environment, on free ports."""
    values = dict(
        home=home,
        kafka_port=free_port(),
        kafka_controller_port=free_port(),
        spark_connect_port=free_port(),
        spark_ui_enabled="false",
        spark_driver_memory="1g",
        topic_partitions=2,
    )
    values.update(overrides)
    return Settings.from_env({}, **values)


@pytest.fixture(scope="session")
def settings(tmp_path_factory: pytest.TempPathFactory) -> Settings:
    return make_settings(tmp_path_factory.mktemp("k2home"))


@pytest.fixture(scope="session")
def jars(settings: Settings):
    from k2.class_archive import ensure_class_archive
    from k2.jvm import ensure_jars

    resolved = ensure_jars(settings)
    ensure_class_archive(settings)  # as `k2 jars` does: every Spark JVM the tests start maps it
    return resolved


@pytest.fixture(scope="session")
def kafka_broker(settings: Settings, jars) -> Iterator:
    from k2.runtime.broker import LocalKafkaBroker

    broker = LocalKafkaBroker(settings)
    broker.start()
    yield broker
    broker.stop()


@pytest.fixture(scope="session")
def catalog(settings: Settings):
    from k2.lake.catalog import load_catalog
    from k2.lake.tables import all_tables, ensure_tables

    cat = load_catalog(settings.lake)
    ensure_tables(cat, all_tables(settings))
    return cat


@pytest.fixture(scope="session")
def spark(settings: Settings, jars, catalog) -> Iterator:
    """A local SparkSession; or, where ON_SPARK_CONNECT is set (a run that test_on_spark_connect.py starts),
    a client of K2's embedded Spark Connect server, as the Airflow tasks use it."""
    from k2.spark import build_spark_session

    if os.environ.get(ON_SPARK_CONNECT) == "1":
        yield from _spark_connect_session(settings)
        return
    _end_a_jvm_without_jars()
    session = build_spark_session(settings, "k2-tests")
    yield session
    session.stop()


def _end_a_jvm_without_jars() -> None:
    """The Spark unit tier (tests/spark) starts Spark's JVM without K2's jars and stops only its
    session: run before the integration tests (``pytest tests/spark tests/integration``), a new
    session in that JVM could not load the Iceberg catalog. End that JVM (it exits when its stdin
    closes), so the next session starts one with the jars."""
    from pyspark import SparkContext

    gateway = SparkContext._gateway
    if gateway is None or SparkContext._active_spark_context is not None:
        return
    gateway.shutdown()
    if getattr(gateway, "proc", None) is not None:
        gateway.proc.stdin.close()
        gateway.proc.wait(timeout=60)
    SparkContext._gateway = SparkContext._jvm = None


ON_SPARK_CONNECT = "TESTS_ON_SPARK_CONNECT"


def _spark_connect_session(settings: Settings) -> Iterator:
    from k2.runtime.spark_connect import LocalSparkConnectServer
    from k2.spark import remote_session

    server = LocalSparkConnectServer(settings)
    server.ensure_running()
    try:
        session = remote_session(settings, server.client_url())
        assert session.version.startswith("4.")  # a Connect session answers through the server
        yield session
        session.stop()
    finally:
        server.stop()
