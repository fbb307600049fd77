"""The services' sections: the JVM tools, Kafka and its topics, the Iceberg lake, the local Airflow
and K2's own PostgreSQL."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from k2 import resources
from k2.errors import K2Error
from k2.settings.fields import Section, setting
from k2.settings.security import is_loopback


@dataclass(frozen=True)
class JvmSettings(Section):
    jars_dir: Path = setting(
        resources.DEFAULT_JARS_DIR, "Where Maven copies the JVM artifacts (shared by every K2_HOME)."
    )
    java: str = setting("java", "Java 17+ launcher used for the Kafka broker (and by Spark via PATH).")
    maven: str = setting("mvn", "Maven launcher used to fetch the JVM artifacts.")


@dataclass(frozen=True)
class KafkaSettings(Section):
    PREFIX = "kafka_"
    embedded: bool = setting(True, "Run K2's own single-node KRaft broker; false to use a cluster.")
    bootstrap_servers: str = setting("", "Bootstrap servers; default is the embedded broker.")
    host: str = setting("127.0.0.1", "Address the embedded broker binds to (loopback by default).")
    port: int = setting(9092, "Client port of the embedded broker.", ge=1, le=65535)
    controller_port: int = setting(9093, "KRaft controller port of the embedded broker.", ge=1, le=65535)
    nodes: int = setting(
        1,
        "Nodes of the embedded Kafka (each a broker and a KRaft controller, its own process); 3 runs a local "
        "cluster that survives one node's loss. Node n listens on K2_KAFKA_PORT+n-1 and K2_KAFKA_CONTROLLER_PORT+n-1.",
        ge=1,
        le=5,
    )
    heap: str = setting("512m", "JVM heap (-Xmx) of the embedded broker.")
    start_timeout_s: float = setting(60.0, "How long to wait for the broker to accept clients.", gt=0)
    stop_timeout_s: float = setting(30.0, "Grace period after SIGTERM before the broker is killed.", gt=0)

    def check(self) -> None:
        clients = set(range(self.port, self.port + self.nodes))
        if clients & set(range(self.controller_port, self.controller_port + self.nodes)):
            raise K2Error(
                f"K2_KAFKA_PORT={self.port} and K2_KAFKA_CONTROLLER_PORT={self.controller_port} overlap for "
                f"{self.nodes} node(s) (node n uses each port + n - 1)",
                "give the controllers ports of their own, at least K2_KAFKA_NODES apart from the client ports.",
            )
        if max(clients) > 65535 or self.controller_port + self.nodes - 1 > 65535:
            raise K2Error("K2_KAFKA_NODES runs the ports past 65535", "choose lower K2_KAFKA_PORT/_CONTROLLER_PORT.")

    def node_ports(self) -> list[tuple[int, int]]:
        """(client port, controller port) of each embedded node, node 1 first."""
        return [(self.port + n, self.controller_port + n) for n in range(self.nodes)]


@dataclass(frozen=True)
class TopicSettings(Section):
    PREFIX = "topic_"
    template: str = setting("market.crypto.trades.{exchange}.raw", "Topic name per exchange.")
    partitions: int = setting(3, "Partitions per exchange topic (raised, never lowered).", gt=0)
    replication_factor: int = setting(1, "Replication factor of new topics (3 on a cluster).", gt=0)
    retention_ms: int = setting(7 * 24 * 3600 * 1000, "Topic retention; Bronze replays from it.", gt=0)
    compression: str = setting(
        "lz4",
        "Topic compression.type: none, gzip, snappy, lz4, zstd.",
        choices=("producer", "none", "gzip", "snappy", "lz4", "zstd"),
    )

    def check(self) -> None:
        if "{exchange}" not in self.template:
            raise K2Error(
                "K2_TOPIC_TEMPLATE has no {exchange} placeholder",
                "keep one topic per exchange, e.g. market.crypto.trades.{exchange}.raw.",
            )

    def topic_for(self, exchange: str) -> str:
        return self.template.format(exchange=exchange)


@dataclass(frozen=True)
class LakeSettings(Section):
    catalog_name: str = setting("k2", "Iceberg catalog name, the same in Spark and pyiceberg.")
    catalog_type: str = setting("sql", "sql (JDBC: SQLite or PostgreSQL) or rest.", choices=("sql", "rest"))
    catalog_uri: str = setting("", "SQLAlchemy URL (sql) or REST endpoint; default SQLite in the lake dir.")
    catalog_credential: str = setting("", "REST catalog OAuth2 credential (client_id:secret).")
    warehouse: str = setting("", "Warehouse location: file:// path (default in the lake dir) or s3://.")
    s3_endpoint: str = setting("", "S3-compatible endpoint URL (MinIO, Ceph, ...); empty for AWS.")
    s3_region: str = setting("us-east-1", "S3 region.")
    s3_access_key_id: str = setting("", "S3 access key id; empty uses the default AWS credential chain.")
    s3_secret_access_key: str = setting("", "S3 secret access key.")
    s3_path_style_access: bool = setting(True, "Path-style S3 URLs (needed by MinIO).")

    def check(self) -> None:
        if self.catalog_type == "rest" and not self.catalog_uri:
            raise K2Error("K2_CATALOG_TYPE=rest needs K2_CATALOG_URI", "set it to the REST catalog URL.")
        if self.warehouse and not self.warehouse.startswith(("file:/", "s3://", "s3a://")):
            raise K2Error(
                f"K2_WAREHOUSE={self.warehouse} is neither file:// nor s3://",
                "use an absolute file:// URI or an s3:// location.",
            )


@dataclass(frozen=True)
class LocalAirflowSettings(Section):
    """Airflow as `k2 up` runs it, and the simulated feeds it starts."""

    PREFIX = "airflow_"
    host: str = setting("127.0.0.1", "Address the Airflow API server, UI and log server bind to (elsewhere needs TLS).")
    port: int = setting(8080, "Port of the Airflow API server and UI.", ge=1, le=65535)
    log_server_port: int = setting(
        8793, "Port of the server that hands task and trigger logs to the UI (on K2_AIRFLOW_HOST).", ge=1, le=65535
    )
    tls_cert: str = setting("", "PEM certificate the API server serves; required when K2_AIRFLOW_HOST is not loopback.")
    tls_key: str = setting("", "PEM private key of K2_AIRFLOW_TLS_CERT.")
    db_uri: str = setting(
        "", "Airflow metadata DB; default SQLite in K2_HOME/airflow (postgresql+psycopg2://... to scale out)."
    )
    executor: str = setting(
        "LocalExecutor", "Airflow executor (CeleryExecutor or KubernetesExecutor with their provider, to scale out)."
    )
    celery_workers: int = setting(
        2,
        "With K2_AIRFLOW_EXECUTOR=CeleryExecutor: the Celery workers `k2 up` starts on this machine (each a process "
        "of its own), with a Redis broker (redis-server on 127.0.0.1:K2_AIRFLOW_REDIS_PORT, password generated into "
        "K2_HOME/redis).",
        ge=1,
    )
    celery_concurrency: int = setting(2, "Task slots of each of those Celery workers.", ge=1)
    redis_port: int = setting(6379, "Port of that Redis broker (on 127.0.0.1 only).", ge=1, le=65535)
    admin_user: str = setting(
        "admin", "Airflow UI user created by K2; its password is generated into K2_HOME/airflow/passwords.json."
    )
    feed_sim_rate: float = setting(
        200.0, "Messages per second of each simulated feed started by `k2 up`.", key="feed_sim_rate", gt=0
    )

    @property
    def tls(self) -> bool:
        return bool(self.tls_cert and self.tls_key)

    def check(self) -> None:
        if bool(self.tls_cert) != bool(self.tls_key):
            raise K2Error(
                "only one of K2_AIRFLOW_TLS_CERT and K2_AIRFLOW_TLS_KEY is set",
                "set both (the certificate and its private key, PEM files) or neither.",
            )
        if not is_loopback(self.host) and not self.tls:
            raise K2Error(
                f"K2_AIRFLOW_HOST={self.host} exposes the Airflow UI and its logins beyond this machine without TLS",
                "keep the default 127.0.0.1 (reach it over an SSH tunnel), or set K2_AIRFLOW_TLS_CERT and "
                "K2_AIRFLOW_TLS_KEY to a PEM certificate and key.",
            )


@dataclass(frozen=True)
class PostgresSettings(Section):
    """The PostgreSQL server K2 can run on this machine (k2.runtime.postgres) for the Iceberg catalog
    and Airflow's metadata DB; K2_CATALOG_URI and K2_AIRFLOW_DB_URI point at it (or at any other)."""

    PREFIX = "postgres_"
    embedded: bool = setting(
        False,
        "Run K2's own PostgreSQL server (`k2 up` starts it first, `k2 down` stops it last; data kept) and put "
        "the Iceberg catalog and Airflow's metadata DB on it: K2_CATALOG_URI and K2_AIRFLOW_DB_URI default to "
        "its databases `catalog` and `airflow`, the password generated into K2_HOME/postgres/password (0600).",
    )
    port: int = setting(5432, "Port of the PostgreSQL server K2 starts itself (on 127.0.0.1 only).", ge=1, le=65535)
    bin_dir: str = setting(
        "",
        "Directory of PostgreSQL's server programs (initdb, postgres); empty: `pg_config --bindir`, else the "
        "newest /usr/lib/postgresql/*/bin (Debian's postgresql package).",
    )
