"""The Airflow adapters' own logic: the hook's connection, the trigger's serialisation, typed reports."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest

from k2.jvm import maven_profiles
from k2.lake.maintenance import MaintenanceReport, TableMaintenance
from k2.medallion.reports import GoldReport, SilverReport, medallion_report, timed
from k2.settings import Settings
from k2.spark import STREAM, spark_job


def test_hook_uses_k2_spark_master_when_the_deployment_defines_no_connection(tmp_path: Path, monkeypatch) -> None:
    from k2.airflow.hooks.spark import K2SparkSubmitHook

    monkeypatch.delenv("AIRFLOW_CONN_K2_SPARK", raising=False)
    settings = Settings.from_env({}, home=tmp_path, spark_master="local[1]")
    hook = K2SparkSubmitHook(settings, name="k2-test", application=Path("app.py"), application_args=["--x", "1"])
    command = hook._build_spark_submit_command("app.py")
    assert hook._connection["master"] == "local[1]"
    assert command[command.index("--master") + 1] == "local[1]"
    assert "spark.sql.defaultCatalog=k2" in command and command[-2:] == ["--x", "1"]


def test_hook_takes_the_master_from_a_defined_connection(tmp_path: Path, monkeypatch) -> None:
    from k2.airflow.hooks.spark import K2SparkSubmitHook

    monkeypatch.setenv(
        "AIRFLOW_CONN_K2_SPARK", json.dumps({"conn_type": "spark", "host": "spark://cluster", "port": 7077})
    )
    settings = Settings.from_env({}, home=tmp_path, spark_master="local[1]")
    hook = K2SparkSubmitHook(settings, name="k2-test", application=Path("app.py"), application_args=[])
    assert hook._connection["master"] == "spark://cluster:7077"


def test_spark_job_is_one_command_line_with_the_whole_configuration(tmp_path: Path) -> None:
    settings = Settings.from_env({}, home=tmp_path, spark_master="local[2]")
    job = spark_job(settings, name="k2-bronze-binance", application=Path("job.py"), args=["--exchange", "binance"])
    command = job.command(settings.spark.master)
    assert command[:5] == ["spark-submit", "--master", "local[2]", "--name", "k2-bronze-binance"]
    assert command[-3:] == ["job.py", "--exchange", "binance"]
    assert job.env["SPARK_LOCAL_IP"] == "127.0.0.1"  # local mode stays on loopback
    assert "spark.master" not in job.conf and "spark.app.name" not in job.conf


@pytest.mark.parametrize(
    ("master", "ui_setting", "served"),
    [
        ("local[2]", "auto", True),
        ("spark://master:7077", "auto", False),  # a cluster driver's UI would listen on every interface
        ("spark://master:7077", "true", True),  # only when asked for
        ("local[2]", "false", False),
    ],
)
def test_the_spark_ui_never_listens_beyond_loopback_unless_asked(
    tmp_path: Path, master: str, ui_setting: str, served: bool
) -> None:
    settings = Settings.from_env({"K2_SPARK_UI_ENABLED": ui_setting}, home=tmp_path, spark_master=master)
    job = spark_job(settings, name="k2-bronze-binance", application=Path("job.py"))
    assert job.conf["spark.ui.enabled"] == str(served).lower()


def test_the_embedded_spark_cluster_keeps_every_process_on_loopback_and_shares_its_slots(tmp_path: Path) -> None:
    settings = Settings.from_env({"K2_SPARK_WORKERS": "2"}, home=tmp_path)
    assert settings.spark.master == "spark://127.0.0.1:7077" and settings.spark.embedded_cluster
    assert (settings.streams.cores_max, settings.spark.cores_max) == (1, 2)  # streams never wait for the batch
    job = spark_job(settings, name="k2-bronze-binance", application=Path("job.py"), role="stream")
    assert job.env["SPARK_LOCAL_IP"] == "127.0.0.1" and job.conf["spark.driver.bindAddress"] == "127.0.0.1"
    assert job.conf["spark.cores.max"] == "1" and job.conf["spark.ui.enabled"] == "true"
    remote = Settings.from_env({"K2_SPARK_WORKERS": "2"}, home=tmp_path, spark_master="spark://cluster:7077")
    assert (
        not remote.spark.embedded_cluster
        and "SPARK_LOCAL_IP" not in spark_job(remote, name="k2-silver", application=Path("job.py")).env
    )


SECRET_CATALOG = {
    "catalog_uri": "postgresql://k2:SENTINEL-PG@db.internal:5432/k2",
    "warehouse": "s3://k2-lake/warehouse",
    "s3_access_key_id": "k2",
    "s3_secret_access_key": "SENTINEL-S3",
}


def test_spark_secrets_go_to_a_private_properties_file_not_the_command_line(tmp_path: Path) -> None:
    settings = Settings.from_env({}, home=tmp_path, spark_master="local[2]", **SECRET_CATALOG)
    job = spark_job(settings, name="k2-bronze-binance", application=Path("job.py"))
    command = " ".join(job.command(settings.spark.master))
    assert "SENTINEL" not in command and "SENTINEL" not in json.dumps(job.conf)
    assert command.count("--properties-file") == 1 and job.properties_file is not None
    assert job.properties_file.stat().st_mode & 0o777 == 0o600
    properties = job.properties_file.read_text()
    assert "spark.sql.catalog.k2.jdbc.password=SENTINEL-PG\n" in properties
    assert "spark.sql.catalog.k2.s3.secret-access-key=SENTINEL-S3\n" in properties
    assert "spark.sql.catalog.k2.uri=jdbc:postgresql://db.internal:5432/k2" in command  # not a secret
    # the Airflow hook submits the same way
    from k2.airflow.hooks.spark import K2SparkSubmitHook

    hook = K2SparkSubmitHook(settings, name="k2-test", application=Path("app.py"), application_args=[])
    submitted = hook._build_spark_submit_command("app.py")
    assert "SENTINEL" not in " ".join(submitted)
    assert submitted[submitted.index("--properties-file") + 1] == str(job.properties_file)


def test_a_stream_with_checkpoints_on_s3_gets_s3a_and_its_secret_in_the_properties_file(tmp_path: Path) -> None:
    settings = Settings.from_env(
        {}, home=tmp_path, spark_master="local[2]", stream_checkpoints="s3a://k2-lake/cp", **SECRET_CATALOG
    )
    assert maven_profiles(settings) == ["s3"]  # hadoop-aws resolved with Iceberg's AWS bundle
    job = spark_job(settings, name="k2-bronze-binance", application=Path("job.py"), role=STREAM)
    command = " ".join(job.command(settings.spark.master))
    assert "SENTINEL" not in command and "spark.hadoop.fs.s3a.access.key=k2" in command
    assert "spark.hadoop.fs.s3a.secret.key=SENTINEL-S3\n" in job.properties_file.read_text()
    batch = spark_job(settings, name="k2-silver", application=Path("job.py"))
    assert not [key for key in batch.conf if "s3a" in key]  # only the streams write checkpoints
    assert maven_profiles(Settings.from_env({}, home=tmp_path)) == []


def test_spark_jobs_without_secrets_need_no_properties_file(tmp_path: Path) -> None:
    job = spark_job(Settings.from_env({}, home=tmp_path), name="k2-x", application=Path("job.py"))
    assert job.properties_file is None and "--properties-file" not in job.command("local[1]")


def test_settle_trigger_round_trips_through_its_serialisation() -> None:
    from k2.airflow.triggers.settle import BronzeSettledTrigger

    path, kwargs = BronzeSettledTrigger("binance", "2026-11-30T10:00:00+00:00", 5.0).serialize()
    module, name = path.rsplit(".", 1)
    cls = getattr(__import__(module, fromlist=[name]), name)
    assert cls is BronzeSettledTrigger
    assert cls(**kwargs).serialize() == (path, kwargs)


def test_settle_trigger_fires_once_bronze_settles(monkeypatch: pytest.MonkeyPatch) -> None:
    from k2.airflow.triggers import settle as trigger_module
    from k2.medallion import settle

    answers = iter([settle.Settlement(False, "waiting"), settle.Settlement(True, "all there")])
    monkeypatch.setattr(settle, "bronze_settlement", lambda *_args, **_kw: next(answers))
    monkeypatch.setattr("k2.settings.load_settings", lambda: None)
    trigger = trigger_module.BronzeSettledTrigger("binance", "2026-11-30T10:00:00+00:00", poll_interval_s=0.01)

    async def first_event():
        async for event in trigger.run():
            return event.payload

    assert asyncio.run(first_event()) == {"settled": True, "detail": "all there"}


def test_job_reports_survive_the_process_boundary(tmp_path: Path) -> None:
    silver = SilverReport(
        "binance",
        "a",
        "b",
        bronze_rows=3,
        items=4,
        silver_new=2,
        duplicates=1,
        dead_letters=1,
        dead_letter_reasons={"invalid_price": 1},
    )
    silver.write(tmp_path / "s.json")
    back = medallion_report(json.loads((tmp_path / "s.json").read_text()))
    assert back == silver and back.balances()
    assert isinstance(medallion_report(GoldReport("kraken", "a", "b", bars={"1m": 2}).to_dict()), GoldReport)
    maintenance = MaintenanceReport(
        "bronze", [TableMaintenance("bronze.x", error="boom"), TableMaintenance("bronze.y")]
    )
    maintenance.write(tmp_path / "m.json")
    assert MaintenanceReport.read(tmp_path / "m.json") == maintenance
    assert maintenance.failed == ["bronze.x"]


def test_a_runs_report_says_where_its_pieces_time_went() -> None:
    total = GoldReport("kraken", "a", "c")
    for piece_steps in ({"touched": 1.25, "gates": 2.0}, {"touched": 0.5, "merge": 3.0}):
        piece = GoldReport("kraken", "a", "b")
        for name, seconds in piece_steps.items():
            piece.steps_s[name] = seconds
        total.add(piece)
    assert total.steps_s == {"touched": 1.75, "gates": 2.0, "merge": 3.0}
    assert 'steps_s={"touched": 1.75, "gates": 2.0, "merge": 3.0}' in total.lines()
    steps: dict[str, float] = {}
    with pytest.raises(RuntimeError), timed(steps, "write"):  # a failed step still counts its time
        raise RuntimeError
    assert set(steps) == {"write"} and steps["write"] >= 0
    assert medallion_report(total.to_dict()).steps_s == total.steps_s


def test_connect_hook_runs_jobs_on_the_embedded_server_with_its_token(tmp_path: Path, monkeypatch) -> None:
    from k2.airflow.hooks.spark_connect import K2SparkConnectHook, spark_job_hook

    monkeypatch.delenv("AIRFLOW_CONN_K2_SPARK_CONNECT", raising=False)
    settings = Settings.from_env({}, home=tmp_path, spark_connect_port=15123)
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "spark-connect.token").write_text("s3cret-token\n")
    hook = spark_job_hook(settings, name="k2-test", application=Path("app.py"), application_args=["--x", "1"], nice=9)
    assert isinstance(hook, K2SparkConnectHook) and hook.nice == 9
    assert hook.session_url() == f"sc://localhost:15123/;token=s3cret-token;session_id={hook.session_id}"


def test_connect_hook_takes_an_external_server_from_the_setting_or_a_defined_connection(
    tmp_path: Path, monkeypatch
) -> None:
    from k2.airflow.hooks.spark_connect import K2SparkConnectHook

    monkeypatch.delenv("AIRFLOW_CONN_K2_SPARK_CONNECT", raising=False)
    settings = Settings.from_env({}, home=tmp_path, spark_connect="sc://spark.internal:15003")
    hook = K2SparkConnectHook(settings, name="k2-test", application=Path("app.py"), application_args=[])
    assert hook.session_url() == f"sc://spark.internal:15003/;session_id={hook.session_id}"
    monkeypatch.setenv(
        "AIRFLOW_CONN_K2_SPARK_CONNECT",
        json.dumps({"conn_type": "spark_connect", "host": "connect.prod", "port": 443, "password": "tok"}),
    )
    hook = K2SparkConnectHook(settings, name="k2-test", application=Path("app.py"), application_args=[])
    assert hook.session_url() == f"sc://connect.prod:443/;token=tok;session_id={hook.session_id}"


def test_spark_connect_off_submits_each_job_with_spark_submit(tmp_path: Path) -> None:
    from k2.airflow.hooks.spark import K2SparkSubmitHook
    from k2.airflow.hooks.spark_connect import spark_job_hook

    settings = Settings.from_env({}, home=tmp_path, spark_connect="off", spark_master="local[1]")
    hook = spark_job_hook(settings, name="k2-test", application=Path("app.py"), application_args=[], nice=7)
    assert isinstance(hook, K2SparkSubmitHook) and hook.nice == 7


def test_a_spark_connect_setting_that_is_no_server_is_refused(tmp_path: Path) -> None:
    from k2.errors import K2Error

    with pytest.raises(K2Error, match="K2_SPARK_CONNECT=spark://x"):
        Settings.from_env({}, home=tmp_path, spark_connect="spark://x")
