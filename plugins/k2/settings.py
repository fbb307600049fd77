"""K2's one settings module: embedded defaults, overridden by ``K2_*`` environment variables.

Settings come in sections (``settings.kafka``, ``settings.lake``, ``settings.spark``, ...), and a
module takes the section it needs. Every field is one variable, ``K2_<KEY>``, whose key is the
section's prefix plus the field name unless the field names its own (``setting(key=...)``). Values
are parsed by the field's type and checked against the bounds and choices declared on the field; an
unknown ``K2_*`` variable is an error, so a typo never silently falls back to a default. Defaults
describe the embedded single-machine stack; the same fields point K2 at a Kafka cluster, a Spark
cluster, a PostgreSQL or REST catalog and S3.

Per-exchange options are ``K2_<EXCHANGE>_<OPTION>`` (e.g. ``K2_BINANCE_SYMBOLS``), checked against
the exchange registry and the options each exchange declares, so adding an exchange needs no change
here.
"""

from __future__ import annotations

import dataclasses
import difflib
import ipaddress
import math
import os
import re
import types
import typing
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, ClassVar

from k2 import resources
from k2.errors import K2Error

ENV_PREFIX = "K2_"
# K2_PROFILE's defaults, keyed like Settings.from_values; the cluster's Spark shares (a core per stream,
# one for the batch) fit in the four slots one worker offers, so the pipeline runs on when a worker dies
PROFILES: dict[str, dict[str, Any]] = {
    "embedded": {},
    "cluster": {
        "kafka_nodes": 3,
        "kafka_controller_port": 9095,  # after the brokers' 9092-9094
        "topic_replication_factor": 3,
        "spark_workers": 2,
        "spark_cores_max": 1,
        "stream_cores_max": 1,
        "postgres_embedded": True,
        "airflow_executor": "CeleryExecutor",
    },
}
SECRET_WORDS = ("secret", "credential", "password")
SECRET_VALUES = ("alert_webhook_url",)  # the URL is the credential (Slack and the like)
SECRET_URL_PASSWORDS = ("catalog_uri", "airflow_db_uri", "spark_connect")  # URLs that may carry a password or token
LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR")
LOG_FORMATS = ("console", "logfmt", "json")


def setting(
    default: Any,
    help: str,
    *,
    key: str = "",
    gt: float | None = None,
    ge: float | None = None,
    le: float | None = None,
    choices: tuple[str, ...] = (),
) -> Any:
    """A field with its help text, its own key if the section's prefix does not fit, and its bounds."""
    return field(default=default, metadata={"help": help, "key": key, "gt": gt, "ge": ge, "le": le, "choices": choices})


@dataclass(frozen=True)
class Section:
    """A group of settings; subclasses declare fields with ``setting()``."""

    PREFIX: ClassVar[str] = ""

    @classmethod
    def key_of(cls, f: dataclasses.Field) -> str:
        return f.metadata["key"] or cls.PREFIX + f.name

    def __post_init__(self) -> None:
        for f in fields(self):
            _check_bounds(env_name(self.key_of(f)), getattr(self, f.name), f.metadata)
        self.check()

    def check(self) -> None:
        """Constraints between fields of the section."""


# --- sections -------------------------------------------------------------------------------------
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
class SparkSettings(Section):
    PREFIX = "spark_"
    master: str = setting(
        "", "Spark master URL; default local[<cores>], or the embedded standalone cluster's when K2_SPARK_WORKERS > 0."
    )
    workers: int = setting(
        0,
        "Embedded Spark standalone cluster: N > 0 makes `k2 up` start a master and N workers from pyspark's own "
        "jars, on 127.0.0.1, and run the streams and the batch on it; 0: local mode.",
        ge=0,
    )
    master_port: int = setting(7077, "Port of the embedded standalone master (on 127.0.0.1).", ge=1, le=65535)
    master_ui_port: int = setting(
        8090,
        "Port of the standalone master's web UI and JSON status: the embedded master's (on 127.0.0.1), or, when "
        "K2_SPARK_MASTER names your own cluster, that master's (Spark's default is 8080). Checks on any host read the "
        "cluster there and end a stalled stream's application through it.",
        ge=1,
        le=65535,
    )
    worker_cores: int = setting(
        4,
        "Task slots each embedded worker offers (slots, not CPUs: two streams and the batch need 4 in all, and "
        "enough must remain when a worker dies).",
        gt=0,
    )
    worker_memory: str = setting("4g", "Memory each embedded worker may give its executors.")
    driver_memory: str = setting(
        "3g",
        "Driver memory of the batch (in local mode, all of Spark's memory; Silver keeps an interval's rows on disk).",
    )
    local_fs: str = setting(
        "nio",
        "Local files in local mode: nio, K2's Hadoop file system (no chmod process per file written, no .crc "
        "files); hadoop, Hadoop's own.",
        choices=("nio", "hadoop"),
    )
    class_archive: bool = setting(
        True,
        "Build (`k2 jars`, `k2 up`) and use a class-data sharing archive of the classes Spark's driver JVMs load at "
        "start; false: JVMs start without it (for an image whose runtime JDK differs from the one building it).",
    )
    cores_max: int = setting(
        0,
        "spark.cores.max of the batch and maintenance jobs on a Spark cluster (one Spark Connect server, or each "
        "spark-submit): the cores they may take, so the streams keep theirs. 0: not set (a standalone master then "
        "gives a job every free core); local mode ignores it.",
        ge=0,
    )
    executor_memory: str = setting(
        "", "spark.executor.memory of the batch and maintenance jobs on a cluster, e.g. 2g; empty: Spark's default."
    )
    shuffle_partitions: int = setting(0, "spark.sql.shuffle.partitions; 0 means the core count.", ge=0)
    ui_enabled: str = setting(
        "auto",
        "Serve the Spark UI. auto: only where every Spark process is on this machine (local mode, the embedded "
        "cluster), on 127.0.0.1; a driver on another cluster binds its UI to every interface, as it must be "
        "reachable by the executors; true: there too, every interface unless SPARK_LOCAL_IP narrows it; false: never.",
        choices=("auto", "true", "false"),
    )
    log_level: str = setting("WARN", "Spark's own log level.")
    pool: str = setting(
        "k2_spark",
        "Airflow pool the Spark batch tasks (Silver, Gold, maintenance) run in; "
        "`k2 airflow init` (and `k2 up`) creates it. Empty: Airflow's default_pool.",
    )
    pool_slots: int = setting(
        1, "Slots of that pool: Spark batch jobs at a time (1 on two cores; more with a Spark cluster).", gt=0
    )
    connect: str = setting(
        "embedded",
        "Where the batch and maintenance jobs run. embedded: a Spark Connect server K2 starts on 127.0.0.1 on "
        "K2_SPARK_MASTER, one warm JVM for every job (no JVM start per task); sc://host:port: an existing Spark "
        "Connect server (its token in the k2_spark_connect Airflow connection's password); off: one spark-submit "
        "per task.",
    )
    connect_port: int = setting(15002, "Port of the embedded Spark Connect server (on 127.0.0.1).", ge=1, le=65535)
    connect_start_timeout_s: float = setting(
        180.0, "How long a job waits for the embedded Spark Connect server to accept clients.", gt=0
    )
    batch_nice: int = setting(
        10,
        "Niceness added to the batch jobs' JVM (the embedded Spark Connect server, or each spark-submit): on shared "
        "cores the Bronze streams get the CPU first, so ingest latency holds while a batch runs.",
        ge=0,
        le=19,
    )

    def check(self) -> None:
        check_memory(env_name(self.PREFIX + "executor_memory"), self.executor_memory)
        check_memory(env_name(self.PREFIX + "worker_memory"), self.worker_memory)
        if self.connect not in ("embedded", "off") and not self.connect.startswith("sc://"):
            raise K2Error(
                f"K2_SPARK_CONNECT={self.connect} is neither embedded, off nor an sc:// URL",
                "use embedded (the default), off (spark-submit per job) or sc://host:15002.",
            )

    @property
    def is_local(self) -> bool:
        return self.master.startswith("local")

    @property
    def embedded_cluster(self) -> bool:
        """The standalone cluster K2 starts itself: every process of it on loopback."""
        return self.workers > 0 and self.master == f"spark://127.0.0.1:{self.master_port}"

    @property
    def on_loopback(self) -> bool:
        """Drivers, executors and UIs all on this machine: they bind 127.0.0.1 only."""
        return self.is_local or self.embedded_cluster

    @property
    def serve_ui(self) -> bool:
        """Whether Spark applications serve their UI: never on a wildcard address unless asked for."""
        return self.ui_enabled == "true" or (self.ui_enabled == "auto" and self.on_loopback)

    @property
    def connect_embedded(self) -> bool:
        return self.connect == "embedded"

    @property
    def airflow_pool(self) -> str:
        return self.pool or "default_pool"


@dataclass(frozen=True)
class StreamSettings(Section):
    PREFIX = "stream_"
    trigger_interval_s: float = setting(
        1.0, "Micro-batch trigger interval of the Bronze streams.", key="bronze_trigger_interval_s", gt=0
    )
    max_offsets_per_trigger: int = setting(
        200_000, "Cap on records per Bronze micro-batch.", key="bronze_max_offsets_per_trigger", gt=0
    )
    write_tasks: int = setting(
        0,
        "Tasks (and so data files) per Bronze micro-batch; 0: one per Kafka partition. Each task costs the "
        "stream fixed work every batch.",
        key="bronze_write_tasks",
        ge=0,
    )
    fail_on_data_loss: bool = setting(
        True, "Fail the stream when Kafka dropped unread records.", key="bronze_fail_on_data_loss"
    )
    codegen: bool = setting(
        False,
        "Compile the Bronze query to Java (Spark's code generation); false: interpret it. Each micro-batch's "
        "time is a constant in the generated code, so every batch compiled anew: a third of a stream's CPU at "
        "200 msg/s.",
        key="bronze_codegen",
    )
    snapshot_retention_s: float = setting(
        600.0,
        "A Bronze stream expires its own snapshots older than this (it commits one per micro-batch, and every "
        "commit rewrites the list of them); Bronze time travel reaches this far. At most a day.",
        key="bronze_snapshot_retention_s",
        gt=0,
        # a day of 1 s commits is 86,400 snapshots in every commit's metadata; replays come from Kafka
        le=86_400,
    )
    expire_every_s: float = setting(
        60.0,
        "How often a Bronze stream merges its small manifests and expires its old snapshots (k2.streams.upkeep), "
        "at most K2_BRONZE_SNAPSHOT_RETENTION_S; 0: never (then only the maintenance DAG does).",
        key="bronze_expire_every_s",
        ge=0,
    )
    driver_memory: str = setting("1g", "Driver memory of each Bronze stream (local mode: all of it).")
    cores_max: int = setting(
        0,
        "spark.cores.max of each Bronze stream on a Spark cluster: without it a standalone master gives the first "
        "stream every core and the next stream and the batch wait. 0: not set; local mode ignores it.",
        ge=0,
    )
    executor_memory: str = setting(
        "", "spark.executor.memory of each Bronze stream on a cluster, e.g. 1g; empty: Spark's default."
    )
    checkpoints: str = setting(
        "",
        "Where the Bronze streams keep their Spark checkpoints: empty for K2_HOME/checkpoints, or s3a://bucket/prefix "
        "(Hadoop's S3A with the K2_S3_* settings), which any host a stream may restart on reaches.",
    )
    check_interval_s: float = setting(
        30.0,
        "How often each stream is reconciled (observed, and started, restarted or killed as needed): the schedule "
        "of its supervisor DAG, whose every run is one short check. A dead stream restarts within about this long.",
        gt=0,
    )
    stall_timeout_s: float = setting(60.0, "No completed batch for this long, with Kafka ahead: stalled.", gt=0)
    kafka_outage_s: float = setting(
        60.0,
        "A running stream that finds no broker answering for this long stops as `kafka_unreachable`, and its "
        "supervisor waits the outage out with back-off (Spark's own Kafka client fails the query only after about "
        "3.5 minutes of retries).",
        gt=0,
    )
    start_timeout_s: float = setting(180.0, "Time a starting stream gets to complete its first batch.", gt=0)
    backoff_base_s: float = setting(2.0, "First restart delay; doubles per consecutive failure.", gt=0)
    backoff_max_s: float = setting(120.0, "Longest restart delay.", gt=0)
    max_restarts_per_hour: int = setting(10, "Restarts in an hour after which the supervisor gives up.", gt=0)
    lease_ttl_s: float = setting(
        180.0,
        "A stream stops itself when no supervisor renewed its lease for this long (e.g. its DAG is paused).",
        gt=0,
    )

    def check(self) -> None:
        check_memory(env_name(self.PREFIX + "executor_memory"), self.executor_memory)
        # expiring less often than the retention lets snapshots pile up to every + retention
        if self.expire_every_s > self.snapshot_retention_s:
            raise K2Error(
                f"K2_BRONZE_EXPIRE_EVERY_S={self.expire_every_s:g} is longer than "
                f"K2_BRONZE_SNAPSHOT_RETENTION_S={self.snapshot_retention_s:g}: snapshots would outlive the retention",
                "expire at least once per retention (e.g. every 60 s for 600 s), or set 0 to leave it to maintenance.",
            )
        if self.checkpoints and not self.checkpoints.startswith("s3a://"):
            raise K2Error(
                f"K2_STREAM_CHECKPOINTS={self.checkpoints} is not an s3a:// location",
                "leave it empty for K2_HOME/checkpoints, or set s3a://bucket/prefix (Hadoop names S3 s3a://).",
            )
        # a lease shorter than two checks lapses between healthy checks: the stream would stop itself
        if self.lease_ttl_s < 2 * self.check_interval_s:
            raise K2Error(
                f"K2_STREAM_LEASE_TTL_S={self.lease_ttl_s:g} is shorter than two checks "
                f"(K2_STREAM_CHECK_INTERVAL_S={self.check_interval_s:g}): streams would stop between checks",
                "keep the lease at least a few checks long (the defaults are 180 s and 30 s).",
            )


@dataclass(frozen=True)
class BatchSettings(Section):
    silver_max_event_lead_s: int = setting(
        300,
        "A trade whose event time is this far after its Kafka timestamp goes to the dead letters (future_timestamp).",
        gt=0,
    )
    silver_max_event_age_s: int = setting(
        7 * 86_400,
        "A trade whose event time is this far before its Kafka timestamp goes to the dead letters (stale_timestamp).",
        gt=0,
    )
    query_tail_timeout_s: float = setting(
        30.0,
        "How long a query may take to read the Kafka tail (the records the Bronze stream has not committed).",
        key="query_tail_timeout_s",
        gt=0,
    )
    query_server: bool = setting(
        True,
        "`k2 up` starts the query server (`k2 query serve`): it judges each Kafka record once, on arrival, so "
        "queries (`k2 query trades`, bars, sql) answer from judged rows; false: every query judges the "
        "unprocessed records itself.",
        key="query_server",
    )
    settle_timeout_s: float = setting(
        1800.0,
        "How long the batch waits for Bronze to hold every record ingested in its interval before it fails "
        "(and retries).",
        key="batch_settle_timeout_s",
        gt=0,
    )
    expectations_dir: Path = setting(
        resources.EXPECTATIONS_DIR,
        "The Great Expectations project whose suites gate Bronze, Silver and Gold (results go to K2_HOME/quality); "
        "default: the one K2 ships.",
    )
    deadline_min: float = setting(
        45.0,
        "A k2_medallion run still unfinished this long after it was queued fires a deadline alert.",
        key="medallion_deadline_min",
        gt=0,
    )
    ingest_grace_s: float = setting(
        60.0,
        "A scheduled run's Bronze range is its data interval shifted this much later: a record stamped just "
        "before the hour but ingested a few seconds after it still counts in that hour's run.",
        key="batch_ingest_grace_s",
        ge=0,
        le=1800,
    )
    catch_up_max_pieces: int = setting(
        24,
        "A scheduled run also processes the Bronze ranges no earlier run covered (scheduler downtime, a paused "
        "DAG, a failed hour), oldest first, at most this many hour pieces per run; the next run goes on.",
        key="batch_catch_up_max_pieces",
        gt=0,
    )
    pass_max_rows: int = setting(
        2_000_000,
        "Adjacent pieces of a run (quiet hours of a catch-up) are processed in one Spark pass while their Bronze "
        "rows add up to at most this many: a pass has a fixed cost (about 18 s on 2 cores). 0: one pass per piece.",
        key="batch_pass_max_rows",
        ge=0,
    )
    max_manual_interval_h: float = setting(
        168.0,
        "Longest interval a manually triggered k2_medallion run (parameters start/end) may cover, in hours; a "
        "longer one is refused before any work: trigger several runs, or use an Airflow backfill.",
        key="batch_max_manual_interval_h",
        gt=0,
        le=366 * 24,
    )
    execution_timeout_min: float = setting(
        60.0,
        "A Silver or Gold task running longer than this is stopped (its Spark job interrupted) and retried.",
        key="batch_execution_timeout_min",
        gt=0,
    )
    gaps_neighbour_window_s: float = setting(
        900.0,
        "Gap detection reads Silver's trades this far before and after the interval's own (event time), so the "
        "trades just before an interval are the neighbours of its first ones; a gap whose last trade before it "
        "is older than this when the trade after it arrives is not seen.",
        key="gaps_neighbour_window_s",
        gt=0,
    )


@dataclass(frozen=True)
class MaintenanceSettings(Section):
    PREFIX = "maintenance_"
    snapshot_retention_h: float = setting(
        72.0, "Snapshots older than this are expired (time travel and rollback reach this far back).", gt=0
    )
    min_snapshots: int = setting(10, "Snapshots always kept per table, however old.", gt=0)
    orphan_age_h: float = setting(
        72.0, "Unreferenced files younger than this are never deleted (they may belong to a commit in flight).", gt=0
    )
    target_file_mb: int = setting(128, "Target data file size when compacting.", gt=0)
    deadline_min: float = setting(180.0, "Deadline of a k2_maintenance run, from when it was queued.", gt=0)
    execution_timeout_min: float = setting(
        120.0, "A maintenance task running longer than this is stopped (its Spark job interrupted) and retried.", gt=0
    )
    pool: str = setting(
        "k2_maintenance",
        "Airflow pool (one slot) of the maintenance tasks, apart from the batch's: the hourly batch never waits "
        "behind maintenance. Empty: share K2_SPARK_POOL.",
    )
    nice: int = setting(
        15,
        "Niceness added to maintenance's spark-submit (K2_SPARK_CONNECT=off; on Spark Connect maintenance runs at "
        "K2_SPARK_BATCH_NICE): compaction yields the CPU to the streams and the batch.",
        ge=0,
        le=19,
    )

    log_max_mb: int = setting(
        100, "A K2 component log (stream, feed, broker, Airflow) over this size is rotated.", gt=0
    )
    log_keep: int = setting(5, "Rotated copies kept per component log (name.log.1 is the newest).", ge=1)
    log_retention_days: float = setting(14.0, "Airflow task logs older than this are deleted.", gt=0)
    quality_retention_days: float = setting(
        30.0, "Great Expectations results and their Data Docs pages older than this are deleted.", gt=0
    )
    airflow_db_retention_days: float = setting(
        30.0, "DAG runs, task instances and logs older than this are cleaned from Airflow's metadata DB.", gt=0
    )

    def check(self) -> None:
        if self.orphan_age_h < 24:
            raise K2Error(
                f"K2_MAINTENANCE_ORPHAN_AGE_H={self.orphan_age_h:g} is under 24 hours: files "
                "that young may belong to a commit in flight",
                "use 24 or more (Iceberg refuses shorter windows for the same reason).",
            )


@dataclass(frozen=True)
class AlertSettings(Section):
    PREFIX = "alert_"
    monitor_window_s: float = setting(
        60.0, "Window over which monitoring computes latency percentiles and throughput.", key="monitor_window_s", gt=0
    )
    thresholds_file: str = setting(
        "",
        "JSON file overriding alert thresholds per metric and exchange (see `k2 thresholds`); the Airflow "
        "Variable k2_alert_thresholds overrides it in turn.",
        key="monitor_thresholds_file",
    )
    monitor_nice: int = setting(
        5,
        "Niceness the monitoring task takes on: its measurement yields the CPU to the streams.",
        key="monitor_nice",
        ge=0,
        le=19,
    )
    resolve_after_s: float = setting(
        120.0, "A metric back under its thresholds for this long resolves its incident.", gt=0
    )
    webhook_url: str = setting("", "Slack-compatible incoming webhook for alerts; empty: not used.")
    smtp_host: str = setting("", "SMTP server for alert e-mails; empty: not used.")
    smtp_port: int = setting(587, "SMTP port.", ge=1, le=65535)
    smtp_starttls: bool = setting(True, "Upgrade the SMTP connection with STARTTLS.")
    smtp_user: str = setting("", "SMTP login; empty: no authentication.")
    smtp_password: str = setting("", "SMTP password.")
    email_from: str = setting("k2@localhost", "Sender of alert e-mails.")
    email_to: tuple[str, ...] = setting((), "Recipients of alert e-mails, comma-separated.")
    delivery_attempts: int = setting(
        3, "Attempts per alert and channel before it waits in the outbox for the next monitoring run.", gt=0
    )
    retry_backoff_s: float = setting(1.0, "First delay between delivery attempts; doubles per attempt.", gt=0)

    def check(self) -> None:
        if self.smtp_host and not self.email_to:
            raise K2Error(
                "K2_ALERT_SMTP_HOST is set but K2_ALERT_EMAIL_TO is empty",
                "name the recipients of alert e-mails, comma-separated, or unset K2_ALERT_SMTP_HOST.",
            )
        if self.webhook_url and not self.webhook_url.startswith(("http://", "https://")):
            raise K2Error(
                "K2_ALERT_WEBHOOK_URL is not an http(s) URL (its value, a secret, is not shown)",
                "use the webhook URL your chat tool gave you (https://...).",
            )


@dataclass(frozen=True)
class GapRepairSettings(Section):
    """Fetching missing trades from the exchanges' REST APIs (``k2 gaps repair``)."""

    PREFIX = "gaps_repair_"
    enabled: bool = setting(
        False,
        "The k2_medallion DAG's repair_gaps task fetches every open gap's trades from the exchange's REST API "
        "and publishes them to Kafka (on/off; off: the task is skipped). `k2 gaps repair` works either way.",
        key="gaps_repair",
    )
    max_trades: int = setting(
        100_000,
        "Most trades fetched for one gap in one repair; the rest stays missing (a narrower gap) for the next.",
        gt=0,
    )
    max_wait_s: float = setting(
        120.0,
        "Longest Retry-After (HTTP 429 or 418) a repair honours; an exchange asking for more fails the gap.",
        gt=0,
    )
    wait_budget_s: float = setting(
        600.0,
        "Time one repair may spend waiting on rate limits and retries per exchange; past it the remaining "
        "gaps fail with that cause.",
        gt=0,
    )
    retries: int = setting(
        5, "Retries of a request that failed with HTTP 5xx or a network error, with exponential backoff.", ge=0
    )
    request_timeout_s: float = setting(15.0, "Timeout of one REST request.", gt=0)
    execution_timeout_min: float = setting(
        60.0, "A repair_gaps task running longer than this is stopped (what it published stays) and retried.", gt=0
    )

    def check(self) -> None:
        if self.max_wait_s > self.wait_budget_s:
            raise K2Error(
                f"K2_GAPS_REPAIR_MAX_WAIT_S={self.max_wait_s:g} is longer than "
                f"K2_GAPS_REPAIR_WAIT_BUDGET_S={self.wait_budget_s:g}: no such wait could be honoured",
                "keep the longest honoured Retry-After within the waiting budget.",
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


SECTIONS: dict[str, type[Section]] = {
    "jvm": JvmSettings,
    "kafka": KafkaSettings,
    "topics": TopicSettings,
    "lake": LakeSettings,
    "spark": SparkSettings,
    "streams": StreamSettings,
    "batch": BatchSettings,
    "maintenance": MaintenanceSettings,
    "alerts": AlertSettings,
    "airflow": LocalAirflowSettings,
    "postgres": PostgresSettings,
    "gaps_repair": GapRepairSettings,
}


@dataclass(frozen=True)
class Settings:
    """The whole configuration: the state directory, logging, the exchanges, and one section each."""

    home: Path = setting(resources.DEFAULT_HOME, "State directory: Kafka data, lake, checkpoints, pids, logs.")
    log_level: str = setting(
        "INFO",
        "Log level of K2's own loggers: DEBUG, INFO, WARNING, ERROR.",
        choices=("DEBUG", "INFO", "WARNING", "ERROR"),
    )
    log_format: str = setting(
        "console",
        "Log rendering: console (human), logfmt or json (for collectors).",
        choices=("console", "logfmt", "json"),
    )
    exchanges: tuple[str, ...] = setting(("binance", "kraken"), "Exchanges to run, comma-separated.")
    profile: str = setting(
        "embedded",
        "Defaults for a deployment shape. embedded: one broker, Spark in local mode, SQLite, the LocalExecutor; "
        "cluster: the scale-out form on this machine, each part a process of its own (three KRaft brokers and "
        "replication 3, a Spark master and two workers, K2's PostgreSQL for the catalog and Airflow, Celery "
        "workers with Redis). A K2_* variable set explicitly wins over the profile.",
        choices=tuple(PROFILES),
    )
    jvm: JvmSettings = field(default_factory=JvmSettings)
    kafka: KafkaSettings = field(default_factory=KafkaSettings)
    topics: TopicSettings = field(default_factory=TopicSettings)
    lake: LakeSettings = field(default_factory=LakeSettings)
    spark: SparkSettings = field(default_factory=SparkSettings)
    streams: StreamSettings = field(default_factory=StreamSettings)
    batch: BatchSettings = field(default_factory=BatchSettings)
    maintenance: MaintenanceSettings = field(default_factory=MaintenanceSettings)
    alerts: AlertSettings = field(default_factory=AlertSettings)
    airflow: LocalAirflowSettings = field(default_factory=LocalAirflowSettings)
    postgres: PostgresSettings = field(default_factory=PostgresSettings)
    gaps_repair: GapRepairSettings = field(default_factory=GapRepairSettings)

    # keys whose values were derived from others in __post_init__, so every consumer sees concrete values
    _derived: frozenset[str] = field(default=frozenset(), init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        home = Path(self.home).expanduser().resolve()
        object.__setattr__(self, "home", home)
        object.__setattr__(self, "log_level", self.log_level.upper())
        for f in _root_fields():
            _check_bounds(env_name(f.name), getattr(self, f.name), f.metadata)
        self._check_exchanges()
        derived: set[str] = set()

        def derive(section: str, name: str, value: Any) -> None:
            current = getattr(self, section)
            object.__setattr__(self, section, dataclasses.replace(current, **{name: value}))
            derived.add(type(current).key_of(next(f for f in fields(current) if f.name == name)))

        object.__setattr__(self, "jvm", dataclasses.replace(self.jvm, jars_dir=_absolute(self.jvm.jars_dir)))
        object.__setattr__(
            self, "batch", dataclasses.replace(self.batch, expectations_dir=_absolute(self.batch.expectations_dir))
        )
        if not self.kafka.bootstrap_servers:
            servers = ",".join(f"{self.kafka.host}:{port}" for port, _ in self.kafka.node_ports())
            derive("kafka", "bootstrap_servers", servers)
        if self.postgres.embedded:  # the URLs carry the generated password: masked wherever shown
            from k2.runtime.postgres import embedded_uri

            if not self.lake.catalog_uri and self.lake.catalog_type == "sql":
                derive("lake", "catalog_uri", embedded_uri(home, self.postgres.port, "catalog"))
            if not self.airflow.db_uri:
                derive("airflow", "db_uri", embedded_uri(home, self.postgres.port, "airflow"))
        if not self.lake.catalog_uri and self.lake.catalog_type == "sql":
            derive("lake", "catalog_uri", f"sqlite:///{self.lake_dir / 'catalog.db'}")
        if not self.lake.warehouse:
            derive("lake", "warehouse", (self.lake_dir / "warehouse").as_uri())
        if not self.spark.master and self.spark.workers:
            derive("spark", "master", f"spark://127.0.0.1:{self.spark.master_port}")
            # each application's share of the slots, so a stream never waits for cores the batch holds
            if not self.streams.cores_max:
                derive("streams", "cores_max", 1)
            if not self.spark.cores_max:
                derive("spark", "cores_max", 2)
        if not self.spark.master:
            derive("spark", "master", f"local[{os.cpu_count() or 1}]")
        if self.spark.shuffle_partitions == 0:
            derive("spark", "shuffle_partitions", os.cpu_count() or 1)
        if not self.airflow.db_uri:
            derive("airflow", "db_uri", f"sqlite:///{home / 'airflow' / 'airflow.db'}")
        object.__setattr__(self, "_derived", frozenset(derived))
        if self.airflow.executor.rsplit(".", 1)[-1] == "CeleryExecutor" and self.airflow.db_uri.startswith("sqlite"):
            raise K2Error(
                "K2_AIRFLOW_EXECUTOR=CeleryExecutor needs an Airflow database its workers share, not SQLite",
                "set K2_POSTGRES_EMBEDDED=true (`k2 up` runs a PostgreSQL server on this machine), or "
                "K2_AIRFLOW_DB_URI to a PostgreSQL database (postgresql+psycopg2://...).",
            )
        if self.kafka.embedded and self.topics.replication_factor > self.kafka.nodes:
            raise K2Error(
                f"K2_TOPIC_REPLICATION_FACTOR={self.topics.replication_factor} needs as many brokers, and the "
                f"embedded Kafka has K2_KAFKA_NODES={self.kafka.nodes}",
                "set K2_KAFKA_NODES=3 for a local cluster, or lower K2_TOPIC_REPLICATION_FACTOR.",
            )

    def _check_exchanges(self) -> None:
        from k2.exchanges import available

        if not self.exchanges:
            raise K2Error("K2_EXCHANGES is empty", "name at least one exchange, e.g. binance,kraken.")
        for exchange in self.exchanges:
            if not re.fullmatch(r"[a-z][a-z0-9_]*", exchange):
                raise K2Error(
                    f"K2_EXCHANGES holds {exchange!r}, not a lower-case identifier", "use names like binance,kraken."
                )
            if exchange not in available():
                raise K2Error(
                    f"K2_EXCHANGES holds {exchange!r}, which no exchange module implements",
                    f"use some of: {', '.join(available())} (or add a module to k2/exchanges/).",
                )

    # --- state directory layout ----------------------------------------------------------------
    @property
    def kafka_dir(self) -> Path:
        return self.home / "kafka"

    @property
    def lake_dir(self) -> Path:
        return self.home / "lake"

    @property
    def checkpoints_dir(self) -> Path:
        return self.home / "checkpoints"

    @property
    def monitoring_dir(self) -> Path:
        return self.home / "monitoring"

    @property
    def run_dir(self) -> Path:
        return self.home / "run"

    @property
    def logs_dir(self) -> Path:
        return self.home / "logs"

    def topic_for(self, exchange: str) -> str:
        return self.topics.topic_for(exchange)

    def exchange_option(self, exchange: str, option: str, environ: Mapping[str, str] | None = None) -> str:
        """``K2_<EXCHANGE>_<OPTION>`` or "" when unset; exchanges bring their own defaults."""
        env = os.environ if environ is None else environ
        return env.get(f"{ENV_PREFIX}{exchange.upper()}_{option.upper()}", "")

    # --- loading ---------------------------------------------------------------------------------
    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None, **overrides: Any) -> Settings:
        """Settings from ``K2_*`` variables; ``overrides`` are keyed like the variables, without
        the prefix, in lower case (``kafka_port=19092``)."""
        env = os.environ if environ is None else environ
        known = {env_name(key): key for key, _, _ in _all_fields()}
        values: dict[str, Any] = {}
        for name, raw in env.items():
            if not name.startswith(ENV_PREFIX):
                continue
            if name in known:
                values[known[name]] = _parse(known[name], raw)
            elif not _is_exchange_option(name):
                # a misspelt exchange (K2_BINANACE_SYMBOLS) is closest to that exchange's own option
                close = difflib.get_close_matches(name, [*known, *_exchange_option_names()], n=1)
                hint = f"did you mean {close[0]}? " if close else ""
                raise K2Error(
                    f"unknown setting {name}", f"{hint}unset it, or pick one of the settings listed by `k2 settings`."
                )
        values.update(overrides)
        return cls.from_values({**PROFILES.get(values.get("profile", "embedded"), {}), **values})  # bad: refused below

    @classmethod
    def from_values(cls, values: Mapping[str, Any]) -> Settings:
        """Settings from values keyed by setting key (``kafka_port``); unknown keys are refused."""
        where = {key: (section, f.name) for key, section, f in _all_fields()}
        unknown = sorted(set(values) - set(where))
        if unknown:
            raise K2Error(f"unknown setting key(s) {', '.join(unknown)}", "use the keys `k2 settings` lists.")
        root: dict[str, Any] = {}
        per_section: dict[str, dict[str, Any]] = {name: {} for name in SECTIONS}
        for key, value in values.items():
            section, name = where[key]
            (root if section is None else per_section[section])[name] = value
        sections = {name: SECTIONS[name](**kwargs) for name, kwargs in per_section.items()}
        return cls(**root, **sections)

    def values(self, *, derived: bool = True) -> dict[str, Any]:
        """Every setting keyed by its key; without derived values, these are derived again on load."""
        out = {key: self.value(key) for key, _, _ in _all_fields()}
        return out if derived else {k: v for k, v in out.items() if k not in self._derived}

    def is_derived(self, key: str) -> bool:
        """True when ``key`` was not set but computed from other settings (e.g. paths under K2_HOME)."""
        return key in self._derived

    def value(self, key: str) -> Any:
        for k, section, f in _all_fields():
            if k == key:
                return getattr(self if section is None else getattr(self, section), f.name)
        raise KeyError(key)

    def with_overrides(self, **changes: Any) -> Settings:
        """A copy with some settings changed (keyed like ``from_env``'s overrides); derived values
        are derived again."""
        return Settings.from_values({**self.values(derived=False), **changes})

    def secret_values(self) -> set[str]:
        """Every secret this deployment is configured with (whole values and URL passwords)."""
        found = set()
        for key, _, _ in _all_fields():
            value = self.value(key)
            if not isinstance(value, str) or not value:
                continue
            if mask_secret(key, value) == "****":
                found.add(value)
            elif key in SECRET_URL_PASSWORDS:
                found.update(_url_secrets(value))
        return {v for v in found if len(v) >= 4}  # shorter ones would blank out ordinary words

    def redact(self, text: str) -> str:
        """``text`` with every configured secret replaced by ****: for text K2 sends or prints
        that may quote a failure (an exception from a library, a command's output)."""
        for secret in sorted(self.secret_values(), key=len, reverse=True):
            text = text.replace(secret, "****")
        return text

    def describe(self) -> list[tuple[str, str, str, str]]:
        """(variable, value, source, help) for every setting; secrets are masked."""
        rows = []
        for key, _, f in _all_fields():
            value = self.value(key)
            shown = mask_secret(key, ",".join(value) if isinstance(value, tuple) else str(value))
            source = "derived" if key in self._derived else ("env" if env_name(key) in os.environ else "default")
            if source == "default" and key in PROFILES[self.profile]:
                source = f"profile {self.profile}"
            rows.append((env_name(key), shown, source, f.metadata["help"]))
        return rows


def env_name(key: str) -> str:
    return ENV_PREFIX + key.upper()


def is_loopback(host: str) -> bool:
    """Whether binding to ``host`` keeps a listener on this machine."""
    if host == "localhost":
        return True
    try:
        address = ipaddress.ip_address(host)
    except ValueError:  # a host name: only its resolution could tell; treat it as exposed
        return False
    mapped = getattr(address, "ipv4_mapped", None)  # ::ffff:127.0.0.1, as a JVM reports IPv4 sockets
    return (mapped or address).is_loopback


def mask_secret(key: str, shown: str) -> str:
    """A setting's value as it may be printed: secrets by name and whole secret URLs masked, and
    the password inside a connection URL (``postgresql://user:****@host/db``)."""
    if not shown:
        return shown
    if key in SECRET_VALUES or any(word in key for word in SECRET_WORDS):
        return "****"
    if key in SECRET_URL_PASSWORDS:
        return mask_url_password(shown)
    return shown


def mask_url_password(url: str) -> str:
    """``scheme://user:secret@host/...`` -> ``scheme://user:****@host/...``; also ``?password=...``."""
    # up to the authority's last "@": a password may hold one its writer did not percent-encode
    url = re.sub(r"^([A-Za-z][A-Za-z0-9+.-]*://[^/@:]*):[^/]*@", r"\1:****@", url)
    return re.sub(r"([?&;](?:password|passwd|pwd|token|secret|credential)[^=&;]*=)[^&;]*", r"\1****", url, flags=re.I)


def _url_secrets(url: str) -> list[str]:
    """The password or token values inside a connection URL (what mask_url_password hides)."""
    found = re.findall(r"^[A-Za-z][A-Za-z0-9+.-]*://[^/@:]*:([^/]*)@", url)
    found += re.findall(r"[?&;](?:password|passwd|pwd|token|secret|credential)[^=&;]*=([^&;]*)", url, flags=re.I)
    return [f for f in found if f]


def _exchange_option_names() -> list[str]:
    from k2.exchanges import available, get_exchange

    return [f"{ENV_PREFIX}{ex.upper()}_{option}" for ex in available() for option in get_exchange(ex).options]


def _root_fields() -> list[dataclasses.Field]:
    return [f for f in fields(Settings) if f.name not in SECTIONS and not f.name.startswith("_")]


def _all_fields() -> Iterator[tuple[str, str | None, dataclasses.Field]]:
    """(key, section name or None for the root, field) of every setting."""
    for f in _root_fields():
        yield f.name, None, f
    for name, section in SECTIONS.items():
        for f in fields(section):
            yield section.key_of(f), name, f


def _is_exchange_option(name: str) -> bool:
    """``K2_<EXCHANGE>_<OPTION>`` for an exchange in the registry and an option it declares; a
    variable that looks like one for an unknown exchange or option is refused with the choices."""
    from k2.exchanges import available, get_exchange

    for exchange in available():
        prefix = f"{ENV_PREFIX}{exchange.upper()}_"
        if name.startswith(prefix):
            options = get_exchange(exchange).options
            if name[len(prefix) :] in options:
                return True
            raise K2Error(
                f"unknown option {name} for exchange {exchange}",
                f"use one of {', '.join(prefix + o for o in options)}.",
            )
    return False


def _check_bounds(name: str, value: Any, meta: Mapping[str, Any]) -> None:
    if meta.get("choices") and value not in meta["choices"]:
        raise K2Error(f"{name}={value!r} is not one of {', '.join(meta['choices'])}", f"set {name} to one of them.")
    if not isinstance(value, int | float) or isinstance(value, bool):
        return
    if not math.isfinite(value):  # NaN passes every comparison, inf every lower bound
        raise K2Error(f"{name}={value} is not a finite number", f"give {name} a number, or unset it for the default.")
    if meta.get("gt") is not None and not value > meta["gt"]:
        if meta["gt"] == 0:
            raise K2Error(f"{name} must be positive, got {value}", "set a positive number or unset it for the default.")
        raise K2Error(f"{name} must be > {meta['gt']}, got {value}", f"use more than {meta['gt']}.")
    if meta.get("ge") is not None and value < meta["ge"]:
        if meta.get("le") == 65535:
            raise K2Error(f"{name}={value} is not a TCP port", "use a port in 1..65535.")
        raise K2Error(f"{name} must be >= {meta['ge']}, got {value}", f"use {meta['ge']} or more.")
    if meta.get("le") is not None and value > meta["le"]:
        if meta["le"] == 65535:
            raise K2Error(f"{name}={value} is not a TCP port", "use a port in 1..65535.")
        raise K2Error(f"{name} must be <= {meta['le']}, got {value}", f"use {meta['le']} or less.")


def check_memory(name: str, value: str) -> None:
    """A JVM memory size as Spark reads it (512m, 2g); empty means Spark's default."""
    if value and not re.fullmatch(r"\d+[kmgt]b?", value, flags=re.I):
        raise K2Error(f"{name}={value!r} is not a memory size", f"write it as Spark does, e.g. 512m or 2g, in {name}.")


def _absolute(path: Path | str) -> Path:
    return Path(path).expanduser().resolve()


def _hints() -> dict[str, Any]:
    hints: dict[str, Any] = {}
    for key, section, f in _all_fields():
        owner = Settings if section is None else SECTIONS[section]
        hints[key] = typing.get_type_hints(owner)[f.name]
    return hints


def _parse(key: str, raw: str) -> Any:
    kind = _HINTS[key]
    name = env_name(key)
    try:
        if kind is bool:
            lowered = raw.strip().lower()
            if lowered in ("1", "true", "yes", "on"):
                return True
            if lowered in ("0", "false", "no", "off"):
                return False
            raise ValueError(raw)
        if kind is int:
            return int(raw)
        if kind is float:
            return float(raw)
        if kind is Path:
            return Path(raw)
        if typing.get_origin(kind) is tuple or isinstance(kind, types.GenericAlias):
            return tuple(item.strip() for item in raw.split(",") if item.strip())
        return raw.strip()
    except ValueError:
        type_name = getattr(kind, "__name__", str(kind))
        raise K2Error(
            f"{name}={raw!r} is not a valid {type_name}", f"fix the value of {name} or unset it for the default."
        ) from None


_HINTS = _hints()


def load_settings(**overrides: Any) -> Settings:
    """Settings from the process environment (the one entry point for K2 code)."""
    return Settings.from_env(**overrides)
