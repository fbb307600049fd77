"""``Settings``: the state directory, logging, the exchanges and one section each, loaded from
``K2_*`` variables over a profile's defaults, with the values derived from others (paths under
K2_HOME, the embedded services' URLs)."""

from __future__ import annotations

import dataclasses
import difflib
import os
import re
import types
import typing
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from k2 import resources
from k2.errors import K2Error
from k2.settings.fields import ENV_PREFIX, Section, check_bounds, env_name, setting
from k2.settings.pipeline import AlertSettings, BatchSettings, GapRepairSettings, MaintenanceSettings
from k2.settings.security import SECRET_URL_PASSWORDS, mask_secret, url_secrets
from k2.settings.services import (
    JvmSettings,
    KafkaSettings,
    LakeSettings,
    LocalAirflowSettings,
    PostgresSettings,
    TopicSettings,
)
from k2.settings.spark import SparkSettings, StreamSettings

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
LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR")
LOG_FORMATS = ("console", "logfmt", "json")


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
        choices=LOG_LEVELS,
    )
    log_format: str = setting(
        "console",
        "Log rendering: console (human), logfmt or json (for collectors).",
        choices=LOG_FORMATS,
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
            check_bounds(env_name(f.name), getattr(self, f.name), f.metadata)
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
                found.update(url_secrets(value))
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
