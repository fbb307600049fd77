"""The Spark sections: the Spark deployment and batch applications, and the Bronze streams."""

from __future__ import annotations

from dataclasses import dataclass

from k2.errors import K2Error
from k2.settings.fields import Section, check_memory, env_name, setting


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
