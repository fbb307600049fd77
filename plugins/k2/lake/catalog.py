"""One Iceberg catalog, configured once for both Spark (Java) and pyiceberg (Python).

Embedded default: Iceberg's JdbcCatalog in Spark and pyiceberg's SqlCatalog on the same SQLite file
(same catalog name, same absolute warehouse), the file in WAL mode so readers never block the
stream's commits. Scale-out: ``K2_CATALOG_URI`` as a PostgreSQL URL (same two catalog classes), or
``K2_CATALOG_TYPE=rest``; ``K2_WAREHOUSE=s3://...`` with the ``K2_S3_*`` settings for storage.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import TYPE_CHECKING

from k2.errors import K2Error
from k2.settings import LakeSettings, mask_url_password

if TYPE_CHECKING:
    from pyiceberg.catalog import Catalog

SQLITE_BUSY_TIMEOUT_S = 30


def sqlite_path(lake: LakeSettings) -> Path | None:
    """The SQLite file behind the catalog, or None for PostgreSQL/REST."""
    uri = lake.catalog_uri
    if lake.catalog_type != "sql" or not uri.startswith("sqlite:///"):
        return None
    return Path(uri.removeprefix("sqlite:///").split("?", 1)[0])


def pyiceberg_properties(lake: LakeSettings) -> dict[str, str]:
    props: dict[str, str] = {"warehouse": lake.warehouse}
    if lake.catalog_type == "rest":
        props.update(type="rest", uri=lake.catalog_uri)
        if lake.catalog_credential:
            props["credential"] = lake.catalog_credential
    else:
        uri = lake.catalog_uri
        if sqlite_path(lake) is not None and "?" not in uri:
            uri += f"?timeout={SQLITE_BUSY_TIMEOUT_S}"  # wait for a concurrent commit, never fail on it
        # a long-lived catalog (the query server's, k2.lake.current) outlives a restart of its
        # database: each pooled connection is tested before use, not found dead by a query
        props.update(type="sql", uri=uri, pool_pre_ping="true")
    if lake.warehouse.startswith(("s3://", "s3a://")):
        props.update(
            _drop_empty(
                {
                    "s3.endpoint": lake.s3_endpoint,
                    "s3.region": lake.s3_region,
                    "s3.access-key-id": lake.s3_access_key_id,
                    "s3.secret-access-key": lake.s3_secret_access_key,
                    "s3.force-virtual-addressing": str(not lake.s3_path_style_access).lower(),
                }
            )
        )
    return props


def spark_catalog_conf(lake: LakeSettings) -> dict[str, str]:
    """``spark.sql.catalog.<name>.*`` entries for the same catalog."""
    prefix = f"spark.sql.catalog.{lake.catalog_name}"
    conf = {prefix: "org.apache.iceberg.spark.SparkCatalog", f"{prefix}.warehouse": lake.warehouse}
    if lake.catalog_type == "rest":
        conf.update({f"{prefix}.type": "rest", f"{prefix}.uri": lake.catalog_uri})
        if lake.catalog_credential:
            conf[f"{prefix}.credential"] = lake.catalog_credential
    else:
        url, user, password = jdbc_url(lake.catalog_uri)
        conf.update({f"{prefix}.type": "jdbc", f"{prefix}.uri": url})
        conf.update(_drop_empty({f"{prefix}.jdbc.user": user, f"{prefix}.jdbc.password": password}))
        if url.startswith("jdbc:sqlite:"):
            conf[f"{prefix}.jdbc.busy_timeout"] = str(SQLITE_BUSY_TIMEOUT_S * 1000)
    if lake.warehouse.startswith(("s3://", "s3a://")):
        conf.update(
            _drop_empty(
                {
                    f"{prefix}.io-impl": "org.apache.iceberg.aws.s3.S3FileIO",
                    f"{prefix}.s3.endpoint": lake.s3_endpoint,
                    f"{prefix}.client.region": lake.s3_region,
                    f"{prefix}.s3.access-key-id": lake.s3_access_key_id,
                    f"{prefix}.s3.secret-access-key": lake.s3_secret_access_key,
                    f"{prefix}.s3.path-style-access": str(lake.s3_path_style_access).lower(),
                }
            )
        )
    return conf


def jdbc_url(sqlalchemy_uri: str) -> tuple[str, str, str]:
    """(JDBC URL, user, password) for the SQLAlchemy URL pyiceberg uses."""
    from sqlalchemy.engine import make_url

    url = make_url(sqlalchemy_uri)
    if url.get_backend_name() == "sqlite":
        if not url.database or url.database == ":memory:":
            raise K2Error(
                "the SQLite catalog needs a file, not an in-memory database",
                "set K2_CATALOG_URI to sqlite:////absolute/path/catalog.db.",
            )
        return f"jdbc:sqlite:{url.database}", "", ""
    if url.get_backend_name() == "postgresql":
        port = f":{url.port}" if url.port else ""
        return f"jdbc:postgresql://{url.host}{port}/{url.database}", url.username or "", url.password or ""
    raise K2Error(
        f"K2_CATALOG_URI uses {url.get_backend_name()!r}; K2 supports sqlite and postgresql",
        "use sqlite:////path/catalog.db, postgresql://user:pass@host/db, or K2_CATALOG_TYPE=rest.",
    )


def load_catalog(lake: LakeSettings) -> Catalog:
    """pyiceberg catalog; creates the SQLite file (in WAL mode) and warehouse on first use."""
    from pyiceberg.catalog import load_catalog as _load

    db = sqlite_path(lake)
    if db is not None:
        _prepare_sqlite(db)
    if lake.warehouse.startswith("file:"):
        warehouse = Path(lake.warehouse.removeprefix("file://"))
        try:
            warehouse.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise K2Error(
                f"cannot create the warehouse {warehouse}: {exc.strerror}",
                "make K2_HOME writable, or set K2_WAREHOUSE to a writable file:// URI.",
            ) from exc
    try:
        return _load(lake.catalog_name, **pyiceberg_properties(lake))
    except Exception as exc:
        raise K2Error(
            f"cannot open the Iceberg catalog at {mask_url_password(lake.catalog_uri)}: {exc}",
            "check K2_CATALOG_URI and that the catalog service is reachable.",
        ) from exc


def _prepare_sqlite(db: Path) -> None:
    try:
        db.parent.mkdir(parents=True, exist_ok=True)
        with sqlite3.connect(db, timeout=SQLITE_BUSY_TIMEOUT_S) as conn:
            mode = conn.execute("PRAGMA journal_mode").fetchone()[0]
            if mode != "wal":  # persistent per file: set once, applies to every later connection
                conn.execute("PRAGMA journal_mode=WAL")
        conn.close()
    except sqlite3.DatabaseError as exc:
        raise K2Error(
            f"the catalog database {db} cannot be opened: {exc}",
            "check its permissions; if it is corrupt, restore it from a backup (the warehouse files are untouched).",
        ) from exc
    except OSError as exc:
        raise K2Error(
            f"cannot create {db.parent}: {exc.strerror}", "make K2_HOME writable, or point K2_HOME elsewhere."
        ) from exc


def _drop_empty(values: dict[str, str]) -> dict[str, str]:
    return {k: v for k, v in values.items() if v}
