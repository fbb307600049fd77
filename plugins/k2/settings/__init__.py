"""K2's settings: embedded defaults, overridden by ``K2_*`` environment variables.

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

The package holds one module per concern: ``fields`` (how a setting is declared and checked),
``services``, ``spark`` and ``pipeline`` (the sections), ``security`` (masking, loopback) and
``model`` (``Settings`` and its loading). Import from ``k2.settings``.
"""

from k2.settings.fields import ENV_PREFIX, Section, check_memory, env_name, setting
from k2.settings.model import PROFILES, SECTIONS, Settings, load_settings
from k2.settings.pipeline import AlertSettings, BatchSettings, GapRepairSettings, MaintenanceSettings
from k2.settings.security import is_loopback, mask_secret, mask_url_password
from k2.settings.services import (
    JvmSettings,
    KafkaSettings,
    LakeSettings,
    LocalAirflowSettings,
    PostgresSettings,
    TopicSettings,
)
from k2.settings.spark import SparkSettings, StreamSettings

__all__ = [
    "ENV_PREFIX",
    "PROFILES",
    "SECTIONS",
    "AlertSettings",
    "BatchSettings",
    "GapRepairSettings",
    "JvmSettings",
    "KafkaSettings",
    "LakeSettings",
    "LocalAirflowSettings",
    "MaintenanceSettings",
    "PostgresSettings",
    "Section",
    "Settings",
    "SparkSettings",
    "StreamSettings",
    "TopicSettings",
    "check_memory",
    "env_name",
    "is_loopback",
    "load_settings",
    "mask_secret",
    "mask_url_password",
    "setting",
]
