"""K2's one settings module: embedded defaults, overridden by ``K2_*`` environment variables.

Every field of :class:`Settings` is one variable, ``K2_<FIELD NAME IN UPPER CASE>``. Values are
parsed by the field's type and validated on load; an unknown ``K2_*`` variable is an error, so a
typo never silently falls back to a default. Defaults describe the embedded single-machine stack;
the same fields point K2 at a Kafka cluster, a Spark cluster, a PostgreSQL or REST catalog and S3.

Per-exchange options are ``K2_<EXCHANGE>_<OPTION>`` (e.g. ``K2_BINANCE_SYMBOLS``), so adding an
exchange needs no change here.
"""

from __future__ import annotations

import difflib
import os
import re
import types
import typing
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from k2.errors import K2Error

ENV_PREFIX = "K2_"
PER_EXCHANGE_OPTIONS = ("SYMBOLS", "WS_URL")


def _project_root() -> Path:
    """The checkout K2 runs from (editable install), else the working directory."""
    root = Path(__file__).resolve().parents[2]
    return root if (root / "pyproject.toml").is_file() else Path.cwd()


PROJECT_ROOT = _project_root()


def setting(default: Any, help: str) -> Any:
    return field(default=default, metadata={"help": help})


@dataclass(frozen=True)
class Settings:
    # --- state and logging -------------------------------------------------------------------
    home: Path = setting(PROJECT_ROOT / ".k2", "State directory: Kafka data, lake, checkpoints, pids, logs.")
    log_level: str = setting("INFO", "Log level of K2's own loggers: DEBUG, INFO, WARNING, ERROR.")
    log_format: str = setting("console", "Log rendering: console (human), logfmt or json (for collectors).")
    exchanges: tuple[str, ...] = setting(("binance", "kraken"), "Exchanges to run, comma-separated.")

    # --- JVM -------------------------------------------------------------------------------------
    jars_dir: Path = setting(PROJECT_ROOT / "jvm" / "lib", "Where Maven copies the JVM artifacts.")
    java: str = setting("java", "Java 17+ launcher used for the Kafka broker (and by Spark via PATH).")
    maven: str = setting("mvn", "Maven launcher used to fetch the JVM artifacts.")

    # --- Kafka -----------------------------------------------------------------------------------
    kafka_embedded: bool = setting(True, "Run K2's own single-node KRaft broker; false to use a cluster.")
    kafka_bootstrap_servers: str = setting("", "Bootstrap servers; default is the embedded broker.")
    kafka_host: str = setting("127.0.0.1", "Address the embedded broker binds to (loopback by default).")
    kafka_port: int = setting(9092, "Client port of the embedded broker.")
    kafka_controller_port: int = setting(9093, "KRaft controller port of the embedded broker.")
    kafka_heap: str = setting("512m", "JVM heap (-Xmx) of the embedded broker.")
    kafka_start_timeout_s: float = setting(60.0, "How long to wait for the broker to accept clients.")
    kafka_stop_timeout_s: float = setting(30.0, "Grace period after SIGTERM before the broker is killed.")
    topic_template: str = setting("market.crypto.trades.{exchange}.raw", "Topic name per exchange.")
    topic_partitions: int = setting(3, "Partitions per exchange topic (raised, never lowered).")
    topic_replication_factor: int = setting(1, "Replication factor of new topics (3 on a cluster).")
    topic_retention_ms: int = setting(7 * 24 * 3600 * 1000, "Topic retention; Bronze replays from it.")
    topic_compression: str = setting("lz4", "Topic compression.type: none, gzip, snappy, lz4, zstd.")

    # --- Iceberg catalog and storage ------------------------------------------------------------
    catalog_name: str = setting("k2", "Iceberg catalog name, the same in Spark and pyiceberg.")
    catalog_type: str = setting("sql", "sql (JDBC: SQLite or PostgreSQL) or rest.")
    catalog_uri: str = setting("", "SQLAlchemy URL (sql) or REST endpoint; default SQLite in the lake dir.")
    catalog_credential: str = setting("", "REST catalog OAuth2 credential (client_id:secret).")
    warehouse: str = setting("", "Warehouse location: file:// path (default in the lake dir) or s3://.")
    s3_endpoint: str = setting("", "S3-compatible endpoint URL (MinIO, Ceph, ...); empty for AWS.")
    s3_region: str = setting("us-east-1", "S3 region.")
    s3_access_key_id: str = setting("", "S3 access key id; empty uses the default AWS credential chain.")
    s3_secret_access_key: str = setting("", "S3 secret access key.")
    s3_path_style_access: bool = setting(True, "Path-style S3 URLs (needed by MinIO).")

    # --- Spark -----------------------------------------------------------------------------------
    spark_master: str = setting("", "Spark master URL; default local[<cores>].")
    spark_driver_memory: str = setting("2g", "Driver memory (in local mode, all of Spark's memory).")
    spark_shuffle_partitions: int = setting(0, "spark.sql.shuffle.partitions; 0 means the core count.")
    spark_ui_enabled: bool = setting(True, "Serve the Spark UI (on 127.0.0.1 in local mode).")
    spark_log_level: str = setting("WARN", "Spark's own log level.")

    # --- Bronze streams and their supervisor ---------------------------------------------------
    bronze_trigger_interval_s: float = setting(1.0, "Micro-batch trigger interval of the Bronze streams.")
    bronze_max_offsets_per_trigger: int = setting(200_000, "Cap on records per Bronze micro-batch.")
    bronze_fail_on_data_loss: bool = setting(True, "Fail the stream when Kafka dropped unread records.")
    bronze_snapshot_retention_s: float = setting(
        3600.0,
        "A Bronze stream expires its own snapshots older than "
        "this (it commits one per micro-batch, and every commit "
        "rewrites the list of them); Bronze time travel reaches this far.",
    )
    bronze_expire_every_s: float = setting(
        600.0, "How often a Bronze stream expires its old snapshots; 0: never (then only the maintenance DAG does)."
    )
    stream_driver_memory: str = setting("1g", "Driver memory of each Bronze stream (local mode: all of it).")
    stream_check_interval_s: float = setting(5.0, "How often the supervisor checks each stream.")
    stream_stall_timeout_s: float = setting(60.0, "No completed batch for this long, with Kafka ahead: stalled.")
    stream_start_timeout_s: float = setting(180.0, "Time a starting stream gets to complete its first batch.")
    stream_backoff_base_s: float = setting(2.0, "First restart delay; doubles per consecutive failure.")
    stream_backoff_max_s: float = setting(120.0, "Longest restart delay.")
    stream_max_restarts_per_hour: int = setting(10, "Restarts in an hour after which the supervisor gives up.")
    stream_supervise_window_s: float = setting(
        600.0, "How long one supervisor DAG run supervises before the next run takes over."
    )
    stream_lease_ttl_s: float = setting(
        180.0, "A stream stops itself when no supervisor renewed its lease for this long (e.g. its DAG is paused)."
    )

    # --- batch: Bronze -> Silver -> Gold ---------------------------------------------------------
    silver_max_event_lead_s: int = setting(
        300,
        "A trade whose event time is this far after its Kafka timestamp goes to the dead letters (future_timestamp).",
    )
    silver_max_event_age_s: int = setting(
        7 * 86_400,
        "A trade whose event time is this far before its Kafka timestamp goes to the dead letters (stale_timestamp).",
    )
    batch_settle_timeout_s: float = setting(
        1800.0,
        "How long the batch waits for Bronze to hold every Kafka record of its interval before it fails (and retries).",
    )
    spark_pool: str = setting(
        "k2_spark",
        "Airflow pool the Spark batch tasks (Silver, Gold, maintenance) run in; "
        "`k2 up` creates it. Empty: Airflow's default_pool.",
    )
    spark_pool_slots: int = setting(
        1, "Slots of that pool: Spark batch jobs at a time (1 on two cores; more with a Spark cluster)."
    )
    expectations_dir: Path = setting(
        PROJECT_ROOT / "expectations",
        "The Great Expectations project whose suites gate Bronze, Silver and Gold (results go to K2_HOME/quality).",
    )

    # --- Iceberg table maintenance ---------------------------------------------------------------
    maintenance_snapshot_retention_h: float = setting(
        72.0, "Snapshots older than this are expired (time travel and rollback reach this far back)."
    )
    maintenance_min_snapshots: int = setting(10, "Snapshots always kept per table, however old.")
    maintenance_orphan_age_h: float = setting(
        72.0, "Unreferenced files younger than this are never deleted (they may belong to a commit in flight)."
    )
    maintenance_target_file_mb: int = setting(128, "Target data file size when compacting.")

    # --- monitoring and alerts ------------------------------------------------------------------
    monitor_window_s: float = setting(60.0, "Window over which monitoring computes latency percentiles and throughput.")
    monitor_thresholds_file: str = setting(
        "",
        "JSON file overriding alert thresholds per metric and "
        "exchange (see `k2 thresholds`); the Airflow Variable "
        "k2_alert_thresholds overrides it in turn.",
    )
    alert_resolve_after_s: float = setting(
        120.0, "A metric back under its thresholds for this long resolves its incident."
    )
    alert_webhook_url: str = setting("", "Slack-compatible incoming webhook for alerts; empty: not used.")
    alert_smtp_host: str = setting("", "SMTP server for alert e-mails; empty: not used.")
    alert_smtp_port: int = setting(587, "SMTP port.")
    alert_smtp_starttls: bool = setting(True, "Upgrade the SMTP connection with STARTTLS.")
    alert_smtp_user: str = setting("", "SMTP login; empty: no authentication.")
    alert_smtp_password: str = setting("", "SMTP password.")
    alert_email_from: str = setting("k2@localhost", "Sender of alert e-mails.")
    alert_email_to: tuple[str, ...] = setting((), "Recipients of alert e-mails, comma-separated.")
    alert_delivery_attempts: int = setting(
        3, "Attempts per alert and channel before it waits in the outbox for the next monitoring run."
    )
    alert_retry_backoff_s: float = setting(1.0, "First delay between delivery attempts; doubles per attempt.")
    medallion_deadline_min: float = setting(
        45.0, "A k2_medallion run still unfinished this long after it was queued fires a deadline alert."
    )
    maintenance_deadline_min: float = setting(180.0, "Deadline of a k2_maintenance run, from when it was queued.")

    # --- Airflow (run by `k2 up`) and the simulated feeds it starts ------------------------------
    airflow_host: str = setting("127.0.0.1", "Address the Airflow API server and UI bind to.")
    airflow_port: int = setting(8080, "Port of the Airflow API server and UI.")
    airflow_db_uri: str = setting(
        "", "Airflow metadata DB; default SQLite in K2_HOME/airflow (postgresql+psycopg2://... to scale out)."
    )
    airflow_executor: str = setting(
        "LocalExecutor", "Airflow executor (CeleryExecutor or KubernetesExecutor with their provider, to scale out)."
    )
    airflow_admin_user: str = setting(
        "admin", "Airflow UI user created by K2; its password is generated into K2_HOME/airflow/passwords.json."
    )
    feed_sim_rate: float = setting(200.0, "Messages per second of each simulated feed started by `k2 up`.")

    # values resolved from others in __post_init__, so every consumer sees concrete values
    _derived: frozenset[str] = field(default=frozenset(), init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        derived: set[str] = set()

        def derive(name: str, value: Any) -> None:
            object.__setattr__(self, name, value)
            derived.add(name)

        object.__setattr__(self, "home", Path(self.home).expanduser().resolve())
        object.__setattr__(self, "jars_dir", Path(self.jars_dir).expanduser().resolve())
        object.__setattr__(self, "expectations_dir", Path(self.expectations_dir).expanduser().resolve())
        if not self.kafka_bootstrap_servers:
            derive("kafka_bootstrap_servers", f"{self.kafka_host}:{self.kafka_port}")
        if not self.catalog_uri and self.catalog_type == "sql":
            derive("catalog_uri", f"sqlite:///{self.lake_dir / 'catalog.db'}")
        if not self.warehouse:
            derive("warehouse", (self.lake_dir / "warehouse").as_uri())
        if not self.spark_master:
            derive("spark_master", f"local[{os.cpu_count() or 1}]")
        if not self.airflow_db_uri:
            derive("airflow_db_uri", f"sqlite:///{self.home / 'airflow' / 'airflow.db'}")
        if self.spark_shuffle_partitions == 0:
            derive("spark_shuffle_partitions", os.cpu_count() or 1)
        object.__setattr__(self, "_derived", frozenset(derived))
        self._validate()

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
        return self.topic_template.format(exchange=exchange)

    def exchange_option(self, exchange: str, option: str, environ: Mapping[str, str] | None = None) -> str:
        """``K2_<EXCHANGE>_<OPTION>`` or "" when unset; exchanges bring their own defaults."""
        env = os.environ if environ is None else environ
        return env.get(f"{ENV_PREFIX}{exchange.upper()}_{option.upper()}", "")

    # --- loading ---------------------------------------------------------------------------------
    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None, **overrides: Any) -> Settings:
        env = os.environ if environ is None else environ
        known = {env_name(f.name): f for f in _public_fields()}
        values: dict[str, Any] = {}
        for key, raw in env.items():
            if not key.startswith(ENV_PREFIX):
                continue
            if key in known:
                values[known[key].name] = _parse(known[key], raw)
            elif not _is_exchange_option(key):
                close = difflib.get_close_matches(key, list(known), n=1)
                hint = f"did you mean {close[0]}? " if close else ""
                raise K2Error(
                    f"unknown setting {key}",
                    f"{hint}unset it, or pick one of the settings listed by `k2 settings`.",
                )
        values.update(overrides)
        return cls(**values)

    def with_overrides(self, **changes: Any) -> Settings:
        """A copy with some fields changed; derived values are derived again."""
        base = {f.name: getattr(self, f.name) for f in _public_fields() if f.name not in self._derived}
        return Settings(**{**base, **changes})

    def describe(self) -> list[tuple[str, str, str, str]]:
        """(variable, value, source, help) for every setting; secrets are masked."""
        rows = []
        for f in _public_fields():
            value = getattr(self, f.name)
            shown = ",".join(value) if isinstance(value, tuple) else str(value)
            if any(word in f.name for word in ("secret", "credential", "password")):
                shown = "****" if shown else ""
            source = "derived" if f.name in self._derived else ("env" if env_name(f.name) in os.environ else "default")
            rows.append((env_name(f.name), shown, source, f.metadata["help"]))
        return rows

    def _validate(self) -> None:
        for name in ("kafka_port", "kafka_controller_port", "airflow_port"):
            port = getattr(self, name)
            if not 0 < port < 65536:
                raise K2Error(f"{env_name(name)}={port} is not a TCP port", "use a port in 1..65535.")
        if self.kafka_port == self.kafka_controller_port:
            raise K2Error(
                f"K2_KAFKA_PORT and K2_KAFKA_CONTROLLER_PORT are both {self.kafka_port}",
                "give the controller its own port.",
            )
        for name in (
            "topic_partitions",
            "topic_replication_factor",
            "topic_retention_ms",
            "spark_shuffle_partitions",
            "kafka_start_timeout_s",
            "kafka_stop_timeout_s",
            "bronze_trigger_interval_s",
            "bronze_max_offsets_per_trigger",
            "stream_check_interval_s",
            "stream_stall_timeout_s",
            "stream_start_timeout_s",
            "stream_backoff_base_s",
            "stream_backoff_max_s",
            "stream_max_restarts_per_hour",
            "stream_lease_ttl_s",
            "stream_supervise_window_s",
            "silver_max_event_lead_s",
            "silver_max_event_age_s",
            "batch_settle_timeout_s",
            "spark_pool_slots",
            "maintenance_snapshot_retention_h",
            "maintenance_min_snapshots",
            "maintenance_orphan_age_h",
            "maintenance_target_file_mb",
            "monitor_window_s",
            "alert_resolve_after_s",
            "alert_smtp_port",
            "alert_delivery_attempts",
            "alert_retry_backoff_s",
            "medallion_deadline_min",
            "maintenance_deadline_min",
        ):
            if getattr(self, name) <= 0:
                raise K2Error(
                    f"{env_name(name)} must be positive, got {getattr(self, name)}",
                    "set a positive number or unset it for the default.",
                )
        if self.maintenance_orphan_age_h < 24:
            raise K2Error(
                f"K2_MAINTENANCE_ORPHAN_AGE_H={self.maintenance_orphan_age_h:g} is under 24 hours: files "
                "that young may belong to a commit in flight",
                "use 24 or more (Iceberg refuses shorter windows for the same reason).",
            )
        _check_choice("log_format", self.log_format, ("console", "logfmt", "json"))
        _check_choice("log_level", self.log_level.upper(), ("DEBUG", "INFO", "WARNING", "ERROR"))
        _check_choice("catalog_type", self.catalog_type, ("sql", "rest"))
        _check_choice(
            "topic_compression", self.topic_compression, ("producer", "none", "gzip", "snappy", "lz4", "zstd")
        )
        if self.catalog_type == "rest" and not self.catalog_uri:
            raise K2Error("K2_CATALOG_TYPE=rest needs K2_CATALOG_URI", "set it to the REST catalog URL.")
        if not self.exchanges:
            raise K2Error("K2_EXCHANGES is empty", "name at least one exchange, e.g. binance,kraken.")
        for exchange in self.exchanges:
            if not re.fullmatch(r"[a-z][a-z0-9_]*", exchange):
                raise K2Error(
                    f"K2_EXCHANGES holds {exchange!r}, not a lower-case identifier", "use names like binance,kraken."
                )
        if "{exchange}" not in self.topic_template:
            raise K2Error(
                "K2_TOPIC_TEMPLATE has no {exchange} placeholder",
                "keep one topic per exchange, e.g. market.crypto.trades.{exchange}.raw.",
            )
        if self.alert_smtp_host and not self.alert_email_to:
            raise K2Error(
                "K2_ALERT_SMTP_HOST is set but K2_ALERT_EMAIL_TO is empty",
                "name the recipients of alert e-mails, comma-separated, or unset K2_ALERT_SMTP_HOST.",
            )
        if self.alert_webhook_url and not self.alert_webhook_url.startswith(("http://", "https://")):
            raise K2Error(
                f"K2_ALERT_WEBHOOK_URL={self.alert_webhook_url!r} is not an http(s) URL",
                "use the webhook URL your chat tool gave you (https://...).",
            )
        if not self.warehouse.startswith(("file:/", "s3://", "s3a://")):
            raise K2Error(
                f"K2_WAREHOUSE={self.warehouse} is neither file:// nor s3://",
                "use an absolute file:// URI or an s3:// location.",
            )


def env_name(field_name: str) -> str:
    return ENV_PREFIX + field_name.upper()


def _public_fields() -> list[Any]:
    return [f for f in fields(Settings) if not f.name.startswith("_")]


def _is_exchange_option(key: str) -> bool:
    return any(key.endswith(f"_{opt}") and len(key) > len(ENV_PREFIX) + len(opt) + 1 for opt in PER_EXCHANGE_OPTIONS)


def _check_choice(name: str, value: str, choices: tuple[str, ...]) -> None:
    if value not in choices:
        raise K2Error(
            f"{env_name(name)}={value!r} is not one of {', '.join(choices)}", f"set {env_name(name)} to one of them."
        )


_HINTS = typing.get_type_hints(Settings)


def _parse(f: Any, raw: str) -> Any:
    kind = _HINTS[f.name]
    name = env_name(f.name)
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


def load_settings(**overrides: Any) -> Settings:
    """Settings from the process environment (the one entry point for K2 code)."""
    return Settings.from_env(**overrides)
