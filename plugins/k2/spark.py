"""The one place that configures Spark for K2.

``spark_conf`` is the whole configuration as plain strings, so the same values serve an in-process
SparkSession (``build_spark_session``) and a ``spark-submit`` (``spark_job``: ``--conf`` pairs). Split
in two for Spark Connect: ``server_conf`` starts the server, each client session sets ``session_conf``.
"""

from __future__ import annotations

import hashlib
import os
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from k2 import class_archive
from k2.jvm import LOCAL_FS_CLASS, installed_jars, local_fs_jar, stream_listener_jar
from k2.lake.catalog import spark_catalog_conf
from k2.private import write_private
from k2.settings import LakeSettings, Settings, mask_url_password

if TYPE_CHECKING:
    from pyspark.sql import SparkSession


HUGE_METHODS = "-XX:-DontCompileHugeMethods"
BATCH, STREAM = "batch", "stream"  # the two kinds of Spark application, each with its own resources


def spark_conf(settings: Settings, app_name: str, *, ui: bool | None = None, role: str = BATCH) -> dict[str, str]:
    """Everything a new Spark application of K2 needs: its JVM's settings and its sessions'."""
    return {**server_conf(settings, app_name, ui=ui, role=role), **session_conf(settings)}


def resource_conf(settings: Settings, role: str) -> dict[str, str]:
    """What one application may take of a cluster (K2_SPARK_CORES_MAX / K2_STREAM_CORES_MAX and the
    executor memory): a standalone master otherwise gives the first application every core."""
    section = settings.streams if role == STREAM else settings.spark
    conf = {}
    if section.cores_max:
        conf["spark.cores.max"] = str(section.cores_max)
    if section.executor_memory:
        conf["spark.executor.memory"] = section.executor_memory
    return conf


def server_conf(settings: Settings, app_name: str, *, ui: bool | None = None, role: str = BATCH) -> dict[str, str]:
    """The settings fixed when a Spark application starts (jars, memory, cores, JVM options, binding)."""
    jars = installed_jars(settings.jvm).spark_connectors
    if role == STREAM:  # its progress listener (k2.streams.job) uses the Kafka client of spark.jars
        jars = [*jars, stream_listener_jar(settings.jvm)]
    ui_enabled = settings.spark.serve_ui if ui is None else ui
    conf = {
        "spark.master": settings.spark.master,
        "spark.app.name": app_name,
        "spark.jars": ",".join(str(j) for j in jars),
        "spark.sql.extensions": "org.apache.iceberg.spark.extensions.IcebergSparkSessionExtensions",
        "spark.driver.memory": settings.spark.driver_memory,
        "spark.ui.enabled": str(ui_enabled).lower(),
        "spark.ui.showConsoleProgress": "false",
        "spark.log.level": settings.spark.log_level,
        "spark.sql.streaming.metricsEnabled": "true",
        # Spark compiles a whole stage into one Java method; HotSpot leaves methods over 8,000 bytes
        # of bytecode to the interpreter. Silver's parse and validation (every field's JSON type and
        # range, in the stage that reads Bronze) generate 12-17 KB: on 2M Binance trades, Silver took
        # 37 s interpreted, 30 s compiled (benchmarks/batch_medallion.py, 2 cores).
        # the driver maps the classes every JVM loads from K2's shared archive, once `k2 jars` built it
        "spark.driver.extraJavaOptions": f"{HUGE_METHODS} {class_archive.java_options(settings)}".strip(),
        "spark.executor.extraJavaOptions": HUGE_METHODS,
    }
    conf.update(resource_conf(settings, role))
    if role == STREAM and settings.streams.checkpoints:
        conf.update(s3a_conf(settings.lake))
    if settings.spark.on_loopback:
        # everything stays on loopback: driver, block manager and UI
        conf.update({"spark.driver.host": "127.0.0.1", "spark.driver.bindAddress": "127.0.0.1"})
    if settings.spark.is_local:
        conf.update(local_fs_conf(settings))
    return conf


def s3a_conf(lake: LakeSettings) -> dict[str, str]:
    """Hadoop's S3A file system for checkpoints on S3, with the lake's K2_S3_* settings (the secret
    goes to the 0600 properties file with the other secrets, see ``spark_job``)."""
    conf = {
        "spark.hadoop.fs.s3a.endpoint": lake.s3_endpoint,
        "spark.hadoop.fs.s3a.endpoint.region": lake.s3_region,
        "spark.hadoop.fs.s3a.path.style.access": str(lake.s3_path_style_access).lower(),
    }
    if lake.s3_access_key_id:  # else S3A's default chain: environment, profile, instance role
        conf["spark.hadoop.fs.s3a.access.key"] = lake.s3_access_key_id
        conf["spark.hadoop.fs.s3a.secret.key"] = lake.s3_secret_access_key
    return {key: value for key, value in conf.items() if value}


def local_fs_conf(settings: Settings) -> dict[str, str]:
    """K2's local file system for Hadoop (k2.jvm.ensure_local_fs_jar): no chmod process per file
    written. On the driver's class path, as Hadoop loads file systems before spark.jars; and the
    streams' checkpoints through the FileSystem API, which Hadoop's FileContext would bypass (it
    runs ``readlink`` per rename)."""
    jar = local_fs_jar(settings.jvm) if settings.spark.local_fs == "nio" else None
    if jar is None:
        return {}
    return {
        "spark.driver.extraClassPath": str(jar),
        "spark.hadoop.fs.file.impl": LOCAL_FS_CLASS,
        "spark.sql.streaming.checkpointFileManagerClass": CHECKPOINT_FILE_MANAGER,
    }


CHECKPOINT_FILE_MANAGER = "org.apache.spark.sql.execution.streaming.checkpointing.FileSystemBasedCheckpointFileManager"


def session_conf(settings: Settings) -> dict[str, str]:
    """The settings each session may set for itself: a Spark Connect client sends them over its
    connection, so the Connect server's command line carries no catalog credential."""
    conf = {
        # unqualified names like bronze.binance_trades resolve in K2's Iceberg catalog
        "spark.sql.defaultCatalog": settings.lake.catalog_name,
        "spark.sql.session.timeZone": "UTC",
        "spark.sql.shuffle.partitions": str(settings.spark.shuffle_partitions),
        "spark.sql.adaptive.enabled": "true",
        # Spark marks every Kafka source column and most expressions nullable; K2's tables declare
        # the columns that can never be null as required (and as identifier fields). Let Iceberg
        # accept the writes and enforce required-ness on the values themselves.
        "spark.sql.iceberg.check-nullability": "false",
    }
    conf.update(spark_catalog_conf(settings.lake))
    return conf


def build_spark_session(
    settings: Settings,
    app_name: str,
    *,
    ui: bool | None = None,
    extra_conf: dict[str, str] | None = None,
    role: str = BATCH,
) -> SparkSession:
    from pyspark.sql import SparkSession

    if settings.spark.on_loopback:  # the JVM pyspark starts binds its UI where SPARK_LOCAL_IP says
        os.environ.setdefault("SPARK_LOCAL_IP", "127.0.0.1")
    builder = SparkSession.builder
    for key, value in {**spark_conf(settings, app_name, ui=ui, role=role), **(extra_conf or {})}.items():
        builder = builder.config(key, value)
    session = builder.getOrCreate()
    session.sparkContext.setLogLevel(settings.spark.log_level)
    return session


def batch_session(settings: Settings, app_name: str) -> SparkSession:
    """The session of a batch or maintenance job: a client of the Spark Connect server named by
    SPARK_REMOTE when K2's hook set it (k2.airflow.hooks.spark_connect), else a Spark application of
    its own (spark-submit, or a direct call)."""
    remote = os.environ.get(REMOTE_ENV)
    if not remote:
        return build_spark_session(settings, app_name)
    return remote_session(settings, remote)


def remote_session(settings: Settings, url: str) -> SparkSession:
    """A new Spark Connect client session on the server at ``url`` with K2's session settings: the
    server's own conf is shared by all its clients, so each session sets what K2's jobs rely on."""
    from pyspark.sql import SparkSession

    session = SparkSession.builder.remote(url).create()
    for key, value in session_conf(settings).items():
        session.conf.set(key, value)
    return session


REMOTE_ENV = "SPARK_REMOTE"  # pyspark's own variable for a Spark Connect URL


@dataclass(frozen=True)
class SparkJob:
    """One of K2's Spark applications as spark-submit needs it: whoever submits it (the stream
    launcher directly, batch tasks through the Airflow hook) reads everything from here."""

    name: str
    application: Path
    args: tuple[str, ...] = ()
    conf: dict[str, str] = field(default_factory=dict)  # --conf pairs, master and app name excluded
    env: dict[str, str] = field(default_factory=dict)  # environment of spark-submit
    properties_file: Path | None = None  # the secret settings (0600), kept off the command line

    def command(self, master: str) -> list[str]:
        conf = [arg for key, value in self.conf.items() for arg in ("--conf", f"{key}={value}")]
        if self.properties_file:
            conf += ["--properties-file", str(self.properties_file)]
        return [SPARK_SUBMIT, "--master", master, "--name", self.name, *conf, str(self.application), *self.args]


SPARK_SUBMIT = "spark-submit"


def spark_job(
    settings: Settings,
    *,
    name: str,
    application: Path,
    args: list[str] | tuple[str, ...] = (),
    driver_memory: str | None = None,
    role: str = BATCH,
) -> SparkJob:
    """K2's whole Spark configuration (k2.spark.spark_conf) for a spark-submit of ``application``."""
    conf = spark_conf(settings, name, role=role)
    conf.pop("spark.master")  # the submitter decides: K2_SPARK_MASTER, or the Airflow connection
    conf.pop("spark.app.name")
    if driver_memory:
        conf["spark.driver.memory"] = driver_memory
    python = sys.executable
    bin_dir = str(Path(python).parent)  # spark-submit ships with pyspark, next to this interpreter
    env = {
        "PYSPARK_PYTHON": python,
        "PYSPARK_DRIVER_PYTHON": python,
        "PATH": bin_dir + os.pathsep + os.environ.get("PATH", ""),
    }
    if settings.spark.on_loopback:
        env["SPARK_LOCAL_IP"] = "127.0.0.1"  # local mode stays on loopback, not the first interface
    secret = {key: value for key, value in conf.items() if is_secret_conf(key, value)}
    public = {key: value for key, value in conf.items() if key not in secret}
    return SparkJob(name, application, tuple(args), public, env, secret_properties(settings, secret))


def is_secret_conf(key: str, value: str) -> bool:
    """A Spark setting that must stay off command lines: named like a secret, or a URL with one."""
    name = ".".join(key.lower().split(".")[-2:])  # Hadoop's are dotted: fs.s3a.secret.key
    return any(word in name for word in SECRET_CONF_WORDS) or mask_url_password(value) != value


SECRET_CONF_WORDS = ("password", "secret", "credential", "token")


def secret_properties(settings: Settings, conf: dict[str, str]) -> Path | None:
    """``conf`` as a Java properties file readable by this user only (spark-submit --properties-file);
    named by its content, so concurrent submitters write the same file."""
    if not conf:
        return None
    text = "".join(f"{_escape(key)}={_escape(value)}\n" for key, value in sorted(conf.items()))
    path = settings.run_dir / "spark" / f"{hashlib.sha256(text.encode()).hexdigest()[:16]}.properties"
    if not path.exists():
        write_private(path, text)
    return path


def _escape(text: str) -> str:
    # java.util.Properties: backslash escapes, and a line break would end the entry
    return text.replace("\\", "\\\\").replace("\n", "\\n").replace("\r", "\\r")
