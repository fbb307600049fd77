from pathlib import Path

import pytest

from k2.errors import K2Error
from k2.settings import Settings, env_name


def test_defaults_describe_the_embedded_stack(tmp_path: Path) -> None:
    s = Settings.from_env({"K2_HOME": str(tmp_path)})
    assert s.home == tmp_path.resolve()
    assert s.kafka.bootstrap_servers == "127.0.0.1:9092"
    assert s.lake.catalog_uri == f"sqlite:///{tmp_path.resolve()}/lake/catalog.db"
    assert s.lake.warehouse == (tmp_path.resolve() / "lake" / "warehouse").as_uri()
    assert s.spark.master.startswith("local[")
    assert s.exchanges == ("binance", "kraken")
    assert s.topic_for("kraken") == "market.crypto.trades.kraken.raw"


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
    assert all(row[3] for row in rows.values())
