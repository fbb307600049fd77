"""The CeleryExecutor form of K2's Airflow runtime, without starting it: which processes it runs,
where the broker's and the database's passwords go (the environment, never a command line)."""

from __future__ import annotations

from pathlib import Path

import pytest

from k2.errors import K2Error
from k2.runtime.airflow import AirflowServices
from k2.settings import Settings

PG = "postgresql+psycopg2://k2:db-S3CRET-pw@127.0.0.1:5432/airflow"


def _celery(tmp_path: Path, **overrides) -> Settings:
    return Settings.from_env(
        {},
        home=tmp_path,
        airflow_executor="CeleryExecutor",
        airflow_db_uri=PG,
        airflow_celery_workers=3,
        airflow_redis_port=16379,
        **overrides,
    )


def test_celery_on_sqlite_is_refused_with_the_fix() -> None:
    with pytest.raises(K2Error, match="K2_AIRFLOW_DB_URI"):
        Settings.from_env({}, airflow_executor="CeleryExecutor")


def test_the_celery_executor_adds_its_workers_and_a_password_protected_broker(tmp_path: Path) -> None:
    airflow = AirflowServices(_celery(tmp_path))
    workers = [c for c in airflow.components if c.startswith("celery-worker-")]
    assert workers == ["celery-worker-1", "celery-worker-2", "celery-worker-3"]
    env = airflow.environment()
    password = airflow.redis.password()
    assert env["AIRFLOW__CELERY__BROKER_URL"] == f"redis://:{password}@127.0.0.1:16379/0"
    assert env["AIRFLOW__CELERY__RESULT_BACKEND"] == "db+" + PG
    assert airflow.redis.password_file.stat().st_mode & 0o777 == 0o600
    for name in airflow.components:
        command = " ".join(airflow._command(name))
        assert password not in command and "db-S3CRET-pw" not in command
    assert "--skip-serve-logs" in airflow._command("celery-worker-2")  # one log server, K2's own


def test_the_broker_configuration_is_private_and_binds_loopback(tmp_path: Path) -> None:
    redis = AirflowServices(_celery(tmp_path)).redis
    redis._write_conf()
    text = redis.conf_file.read_text()
    assert "bind 127.0.0.1\n" in text and "protected-mode yes" in text
    assert f"requirepass {redis.password()}" in text
    assert redis.conf_file.stat().st_mode & 0o777 == 0o600


def test_the_local_executor_runs_no_workers_and_no_broker(tmp_path: Path) -> None:
    airflow = AirflowServices(Settings.from_env({}, home=tmp_path))
    assert airflow.redis is None
    assert not [c for c in airflow.components if c.startswith("celery-worker-")]
    assert "AIRFLOW__CELERY__BROKER_URL" not in airflow.environment()


def test_status_shows_the_embedded_postgres_the_broker_and_each_worker_without_passwords(tmp_path: Path) -> None:
    from k2.runtime.postgres import LocalPostgres
    from k2.status import _celery as celery_rows
    from k2.status import _postgres as postgres_rows

    settings = Settings.from_env(
        {},
        home=tmp_path,
        postgres_embedded=True,
        postgres_port=15434,
        airflow_executor="CeleryExecutor",
        airflow_redis_port=16380,
    )
    rows = {row[0]: row for row in [*postgres_rows(settings), *celery_rows(settings)]}
    assert list(rows) == ["postgres", "celery-worker-1", "celery-worker-2", "redis"]
    assert rows["postgres"][1:3] == ("stopped", "127.0.0.1:15434/catalog,airflow")
    assert rows["redis"][1:3] == ("stopped", "127.0.0.1:16380")
    assert rows["celery-worker-2"][2].startswith("k2-worker-2@")
    text = repr(rows)
    assert settings.postgres.embedded and AirflowServices(settings).redis.password() not in text
    assert LocalPostgres(settings).password() not in text
    plain = Settings.from_env({}, home=tmp_path / "plain")
    assert postgres_rows(plain) == [] and celery_rows(plain) == []
