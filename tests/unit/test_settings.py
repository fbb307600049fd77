from pathlib import Path

import pytest

from k2.errors import K2Error
from k2.settings import Settings, env_name, mask_url_password


def test_defaults_describe_the_embedded_stack(tmp_path: Path) -> None:
    s = Settings.from_env({"K2_HOME": str(tmp_path)})
    assert s.home == tmp_path.resolve()
    assert s.kafka.bootstrap_servers == "127.0.0.1:9092"
    assert s.lake.catalog_uri == f"sqlite:///{tmp_path.resolve()}/lake/catalog.db"
    assert s.lake.warehouse == (tmp_path.resolve() / "lake" / "warehouse").as_uri()
    assert s.spark.master.startswith("local[")
    assert s.exchanges == ("binance", "kraken")
    assert s.topic_for("kraken") == "market.crypto.trades.kraken.raw"


def test_the_cluster_profile_gives_the_scale_out_form_and_explicit_variables_win(tmp_path: Path, monkeypatch) -> None:
    s = Settings.from_env({"K2_HOME": str(tmp_path), "K2_PROFILE": "cluster", "K2_SPARK_WORKERS": "3"})
    assert (s.kafka.nodes, s.topics.replication_factor) == (3, 3)
    assert s.kafka.bootstrap_servers == "127.0.0.1:9092,127.0.0.1:9093,127.0.0.1:9094"
    assert s.spark.embedded_cluster and s.spark.workers == 3  # set explicitly: the variable wins
    assert (s.spark.cores_max, s.streams.cores_max) == (1, 1)
    assert s.postgres.embedded and s.lake.catalog_uri.startswith("postgresql+psycopg2://k2:")
    assert s.airflow.executor == "CeleryExecutor"
    assert s.with_overrides(log_level="DEBUG").kafka.nodes == 3  # a copy keeps the profile's values
    monkeypatch.setenv("K2_SPARK_WORKERS", "3")
    sources = {row[0]: row[2] for row in s.describe()}
    assert (sources["K2_KAFKA_NODES"], sources["K2_SPARK_WORKERS"]) == ("profile cluster", "env")
    embedded = Settings.from_env({"K2_HOME": str(tmp_path)})
    assert (embedded.profile, embedded.kafka.nodes, embedded.spark.workers, embedded.postgres.embedded) == (
        "embedded",
        1,
        0,
        False,
    )
    with pytest.raises(K2Error, match="K2_PROFILE"):
        Settings.from_env({"K2_HOME": str(tmp_path), "K2_PROFILE": "kubernetes"})


def test_a_standalone_master_is_reached_on_its_ui_port_and_only_a_standalone_master(tmp_path: Path) -> None:
    from k2.runtime.spark_master import SparkMaster

    def master(**env: str) -> SparkMaster | None:
        return SparkMaster.of(Settings.from_env({"K2_HOME": str(tmp_path), **env}))

    assert master() is None  # local mode: no master to ask
    assert master(K2_SPARK_WORKERS="2", K2_SPARK_MASTER_UI_PORT="18090").ui_url == "http://127.0.0.1:18090"
    ha = master(K2_SPARK_MASTER="spark://m1.internal:7077,m2.internal:7077", K2_SPARK_MASTER_UI_PORT="8080")
    assert ha.ui_url == "http://m1.internal:8080"
    assert master(K2_SPARK_MASTER="yarn") is None


def test_environment_overrides_are_parsed_by_type(tmp_path: Path) -> None:
    s = Settings.from_env(
        {
            "K2_HOME": str(tmp_path),
            "K2_KAFKA_PORT": "19092",
            "K2_KAFKA_EMBEDDED": "false",
            "K2_KAFKA_BOOTSTRAP_SERVERS": "k1:9092,k2:9092",
            "K2_EXCHANGES": " kraken ,binance",
            "K2_KAFKA_START_TIMEOUT_S": "12.5",
            "K2_SPARK_MASTER": "spark://master:7077",
        }
    )
    assert s.kafka.port == 19092
    assert s.kafka.embedded is False
    assert s.kafka.bootstrap_servers == "k1:9092,k2:9092"
    assert s.exchanges == ("kraken", "binance")
    assert s.kafka.start_timeout_s == 12.5
    assert s.spark.master == "spark://master:7077"


def test_derived_values_follow_their_inputs(tmp_path: Path) -> None:
    s = Settings.from_env({"K2_HOME": str(tmp_path / "a"), "K2_KAFKA_PORT": "9999"})
    moved = s.with_overrides(home=tmp_path / "b", kafka_port=9998)
    assert moved.lake.catalog_uri.endswith("/b/lake/catalog.db")
    assert moved.kafka.bootstrap_servers == "127.0.0.1:9998"


def test_unknown_setting_is_rejected_with_a_suggestion() -> None:
    with pytest.raises(K2Error) as err:
        Settings.from_env({"K2_KAFKA_PROT": "1"})
    assert "unknown setting K2_KAFKA_PROT" in err.value.cause
    assert "K2_KAFKA_PORT" in err.value.fix


def test_per_exchange_options_are_accepted(tmp_path: Path) -> None:
    env = {"K2_HOME": str(tmp_path), "K2_BINANCE_SYMBOLS": "BTCUSDT,ETHUSDT"}
    s = Settings.from_env(env)
    assert s.exchange_option("binance", "symbols", env) == "BTCUSDT,ETHUSDT"
    assert s.exchange_option("kraken", "symbols", env) == ""


@pytest.mark.parametrize(
    ("key", "value", "message"),
    [
        ("K2_KAFKA_PORT", "ninety", "is not a valid int"),
        ("K2_KAFKA_PORT", "70000", "is not a TCP port"),
        ("K2_KAFKA_EMBEDDED", "maybe", "is not a valid bool"),
        ("K2_TOPIC_PARTITIONS", "0", "must be positive"),
        ("K2_CATALOG_TYPE", "hive", "is not one of"),
        ("K2_LOG_FORMAT", "xml", "is not one of"),
        ("K2_EXCHANGES", "Binance", "lower-case identifier"),
        ("K2_EXCHANGES", "binance,coinbase", "no exchange module implements"),
        ("K2_KRAKEN_SYMBOL", "XBT/USD", "unknown option K2_KRAKEN_SYMBOL for exchange kraken"),
        ("K2_TOPIC_TEMPLATE", "trades", "no {exchange} placeholder"),
        ("K2_WAREHOUSE", "relative/path", "neither file:// nor s3://"),
        ("K2_MAINTENANCE_ORPHAN_AGE_H", "2", "under 24 hours"),
        ("K2_MAINTENANCE_MIN_SNAPSHOTS", "-1", "must be positive"),
        ("K2_KAFKA_START_TIMEOUT_S", "nan", "is not a finite number"),
        ("K2_BATCH_INGEST_GRACE_S", "NaN", "is not a finite number"),
        ("K2_BRONZE_EXPIRE_EVERY_S", "nan", "is not a finite number"),
        ("K2_MONITOR_WINDOW_S", "inf", "is not a finite number"),
        ("K2_BRONZE_SNAPSHOT_RETENTION_S", "1e300", "must be <= 86400"),
        ("K2_BRONZE_EXPIRE_EVERY_S", "3600", "snapshots would outlive the retention"),
        ("K2_STREAM_CHECK_INTERVAL_S", "120", "streams would stop between checks"),
        ("K2_STREAM_CHECKPOINTS", "s3://k2-lake/cp", "is not an s3a:// location"),
        ("K2_BATCH_MAX_MANUAL_INTERVAL_H", "0", "must be positive"),
        ("K2_BATCH_EXECUTION_TIMEOUT_MIN", "-5", "must be positive"),
        ("K2_MAINTENANCE_EXECUTION_TIMEOUT_MIN", "0", "must be positive"),
    ],
)
def test_bad_values_name_the_variable(key: str, value: str, message: str) -> None:
    with pytest.raises(K2Error) as err:
        Settings.from_env({key: value})
    assert key in str(err.value)
    assert message in str(err.value)
    assert err.value.fix


def test_describe_lists_every_setting_and_masks_secrets(tmp_path: Path) -> None:
    s = Settings.from_env({"K2_HOME": str(tmp_path)}, s3_secret_access_key="hunter2")
    rows = {row[0]: row for row in s.describe()}
    assert rows[env_name("s3_secret_access_key")][1] == "****"
    assert rows["K2_CATALOG_URI"][2] == "derived"
    assert rows["K2_CATALOG_URI"][1] == f"sqlite:///{tmp_path.resolve()}/lake/catalog.db"  # nothing to hide
    assert rows["K2_ALERT_WEBHOOK_URL"][1] == ""
    assert all(row[3] for row in rows.values())


def test_k2_settings_masks_passwords_in_urls_and_the_whole_webhook(tmp_path: Path, capsys, monkeypatch) -> None:
    from k2.cli.stack import cmd_settings

    s = Settings.from_env(
        {},
        home=tmp_path,
        catalog_uri="postgresql+psycopg2://k2:pa55-word@db.internal:5432/k2?sslmode=require",
        airflow_db_uri="postgresql+psycopg2://airflow:pa55-db@db.internal/airflow",
        alert_webhook_url="https://hooks.slack.com/services/T000/B000/xoxb-secret",
        alert_smtp_password="smtp-pa55",
        catalog_credential="client:pa55-oauth",
    )
    rows = {row[0]: row[1] for row in s.describe()}
    assert rows["K2_CATALOG_URI"] == "postgresql+psycopg2://k2:****@db.internal:5432/k2?sslmode=require"
    assert rows["K2_AIRFLOW_DB_URI"] == "postgresql+psycopg2://airflow:****@db.internal/airflow"
    assert rows["K2_ALERT_WEBHOOK_URL"] == "****"
    assert rows["K2_ALERT_SMTP_PASSWORD"] == rows["K2_CATALOG_CREDENTIAL"] == "****"
    cmd_settings(s, None)  # type: ignore[arg-type]
    printed = capsys.readouterr().out
    assert "K2_CATALOG_URI" in printed and "db.internal" in printed
    assert "pa55" not in printed and "xoxb" not in printed


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("https://user:tok@catalog.example/api/catalog", "https://user:****@catalog.example/api/catalog"),
        (
            "https://catalog.example:8181/api?token=abc&warehouse=w",
            "https://catalog.example:8181/api?token=****&warehouse=w",
        ),
        ("postgresql://k2:p@ss@db/k2", "postgresql://k2:****@db/k2"),
        ("postgresql://k2@db/k2", "postgresql://k2@db/k2"),
        ("sqlite:////srv/k2:x@y/catalog.db", "sqlite:////srv/k2:x@y/catalog.db"),
        ("sc://connect.prod:443/;token=abc;use_ssl=true", "sc://connect.prod:443/;token=****;use_ssl=true"),
    ],
)
def test_url_passwords_are_masked_and_nothing_else(url: str, shown: str) -> None:
    assert mask_url_password(url) == shown


def test_a_misspelt_exchange_setting_is_refused_with_the_right_name() -> None:
    with pytest.raises(K2Error) as err:
        Settings.from_env({"K2_BINANACE_SYMBOLS": "BTCUSDT"})
    assert "unknown setting K2_BINANACE_SYMBOLS" in err.value.cause
    assert "did you mean K2_BINANCE_SYMBOLS?" in err.value.fix


def test_the_bronze_snapshot_settings_accept_their_documented_forms() -> None:
    s = Settings.from_env({"K2_BRONZE_SNAPSHOT_RETENTION_S": "5", "K2_BRONZE_EXPIRE_EVERY_S": "5"})
    assert (s.streams.snapshot_retention_s, s.streams.expire_every_s) == (5.0, 5.0)
    never = Settings.from_env({"K2_BRONZE_SNAPSHOT_RETENTION_S": "86400", "K2_BRONZE_EXPIRE_EVERY_S": "0"})
    assert never.streams.expire_every_s == 0.0


@pytest.mark.parametrize("host", ["0.0.0.0", "10.1.2.3", "airflow.example.com"])
def test_airflow_beyond_loopback_needs_tls(tmp_path: Path, host: str) -> None:
    with pytest.raises(K2Error) as err:
        Settings.from_env({"K2_HOME": str(tmp_path), "K2_AIRFLOW_HOST": host})
    assert "without TLS" in err.value.cause
    assert "K2_AIRFLOW_TLS_CERT" in err.value.fix
    tls = {"K2_AIRFLOW_TLS_CERT": "/etc/k2/cert.pem", "K2_AIRFLOW_TLS_KEY": "/etc/k2/key.pem"}
    assert Settings.from_env({"K2_HOME": str(tmp_path), "K2_AIRFLOW_HOST": host, **tls}).airflow.tls


@pytest.mark.parametrize("host", ["127.0.0.1", "localhost", "::1", "127.0.0.2", "::ffff:127.0.0.1"])
def test_airflow_on_loopback_needs_no_tls(tmp_path: Path, host: str) -> None:
    assert not Settings.from_env({"K2_HOME": str(tmp_path), "K2_AIRFLOW_HOST": host}).airflow.tls


def test_a_tls_certificate_without_its_key_is_refused(tmp_path: Path) -> None:
    with pytest.raises(K2Error) as err:
        Settings.from_env({"K2_HOME": str(tmp_path), "K2_AIRFLOW_TLS_CERT": "/etc/k2/cert.pem"})
    assert "K2_AIRFLOW_TLS_KEY" in err.value.cause


def test_every_configured_secret_is_redacted_from_text(tmp_path: Path) -> None:
    from k2.monitoring.alerts import send_alert

    env = {
        "K2_HOME": str(tmp_path),
        "K2_CATALOG_URI": "postgresql://k2:pg-S3CRET@db:5432/k2",
        "K2_ALERT_SMTP_PASSWORD": "smtp-S3CRET",
        "K2_ALERT_WEBHOOK_URL": "https://hooks.invalid/T000/B000/hook-S3CRET",
    }
    settings = Settings.from_env(env)
    assert settings.secret_values() == {"pg-S3CRET", "smtp-S3CRET", env["K2_ALERT_WEBHOOK_URL"]}
    failure = f"spark-submit --conf uri={env['K2_CATALOG_URI']} failed; smtp-S3CRET refused"
    assert "S3CRET" not in settings.redact(failure)
    assert settings.redact(failure).startswith("spark-submit --conf uri=postgresql://k2:****@db:5432/k2 failed")
    alert = send_alert("critical", "k2_medallion.silver", failure, settings=settings)
    assert "S3CRET" not in alert.message
    outbox_text = "".join(p.read_text() for p in tmp_path.rglob("*") if p.is_file())
    assert "critical" in outbox_text and "S3CRET" not in outbox_text
