from pathlib import Path

import pytest

from k2.errors import K2Error
from k2.lake.catalog import jdbc_url, pyiceberg_properties, spark_catalog_conf
from k2.settings import Settings


def test_sqlite_catalog_is_shared_by_spark_and_pyiceberg(tmp_path: Path) -> None:
    s = Settings.from_env({"K2_HOME": str(tmp_path)})
    db = tmp_path.resolve() / "lake" / "catalog.db"
    py = pyiceberg_properties(s.lake)
    sp = spark_catalog_conf(s.lake)
    assert py["type"] == "sql"
    assert py["uri"].startswith(f"sqlite:///{db}")
    assert sp["spark.sql.catalog.k2"] == "org.apache.iceberg.spark.SparkCatalog"
    assert sp["spark.sql.catalog.k2.type"] == "jdbc"
    assert sp["spark.sql.catalog.k2.uri"] == f"jdbc:sqlite:{db}"
    assert py["warehouse"] == sp["spark.sql.catalog.k2.warehouse"] == s.lake.warehouse
    assert s.lake.warehouse.startswith("file:///")


def test_postgresql_catalog_gets_jdbc_credentials(tmp_path: Path) -> None:
    s = Settings.from_env(
        {"K2_HOME": str(tmp_path), "K2_CATALOG_URI": "postgresql+psycopg2://k2:pw@db.internal:5433/lake"}
    )
    conf = spark_catalog_conf(s.lake)
    assert conf["spark.sql.catalog.k2.uri"] == "jdbc:postgresql://db.internal:5433/lake"
    assert conf["spark.sql.catalog.k2.jdbc.user"] == "k2"
    assert conf["spark.sql.catalog.k2.jdbc.password"] == "pw"
    # a catalog kept open (the query server's) survives a restart of the database server
    assert pyiceberg_properties(s.lake)["pool_pre_ping"] == "true"


def test_rest_catalog_with_s3_storage() -> None:
    s = Settings.from_env(
        {
            "K2_CATALOG_TYPE": "rest",
            "K2_CATALOG_URI": "http://rest:8181",
            "K2_WAREHOUSE": "s3://lake/k2",
            "K2_S3_ENDPOINT": "http://minio:9000",
            "K2_S3_ACCESS_KEY_ID": "key",
            "K2_S3_SECRET_ACCESS_KEY": "secret",
        }
    )
    py = pyiceberg_properties(s.lake)
    sp = spark_catalog_conf(s.lake)
    assert py["type"] == "rest" and py["uri"] == "http://rest:8181"
    assert py["s3.endpoint"] == "http://minio:9000" and py["s3.access-key-id"] == "key"
    assert sp["spark.sql.catalog.k2.type"] == "rest"
    assert sp["spark.sql.catalog.k2.io-impl"] == "org.apache.iceberg.aws.s3.S3FileIO"
    assert sp["spark.sql.catalog.k2.s3.path-style-access"] == "true"


def test_unsupported_catalog_database_is_rejected() -> None:
    with pytest.raises(K2Error, match="supports sqlite and postgresql"):
        jdbc_url("mysql://u:p@h/db")
