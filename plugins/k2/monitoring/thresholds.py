"""Alert thresholds per metric and exchange: the seeds' defaults, overridden without code.

Sources, later wins: the defaults below, the JSON file ``K2_MONITOR_THRESHOLDS_FILE``, the Airflow
Variable ``k2_alert_thresholds`` (same JSON). The format::

    {"latency_p99_s": {"warning": 10, "critical": 30},
     "exchanges": {"kraken": {"latency_p99_s": {"warning": 20}}}}

A level set to null is switched off. Anything else that is not a known metric, level or exchange,
or a negative or non-numeric value, is rejected with the key named.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from k2.errors import K2Error
from k2.settings import Settings

LEVELS = ("warning", "critical")


@dataclass(frozen=True)
class Threshold:
    warning: float | None
    critical: float | None

    def level(self, value: float | None) -> str | None:
        """``critical``, ``warning`` or None (fine, or unknown: an unknown value never alerts)."""
        if value is None:
            return None
        if self.critical is not None and value > self.critical:
            return "critical"
        if self.warning is not None and value > self.warning:
            return "warning"
        return None


# metric -> (default, what it measures); the seeds' ADR sets Bronze p99 at 10 s / 30 s
DEFAULTS: dict[str, tuple[Threshold, str]] = {
    "latency_p99_s": (Threshold(10.0, 30.0), "Kafka -> Iceberg commit p99, including records still waiting"),
    "lag_messages": (Threshold(200_000, 2_000_000), "records in Kafka the stream has not committed"),
    "freshness_s": (Threshold(300.0, 900.0), "seconds since Bronze last committed while records wait in Kafka"),
    "restarts_1h": (Threshold(2, 9), "supervisor restarts in the last hour"),
    "dead_letter_ratio": (Threshold(0.01, 0.05), "share of the last hour's records sent to dead letters"),
    # an hourly batch leaves a record waiting up to about 65 min: two missed hours warn, six are critical
    "unprocessed_age_s": (Threshold(7_200, 21_600), "age of the oldest Bronze record Silver has not processed"),
    "bronze_gap_rows": (Threshold(None, 0), "Kafka records the stream committed that Bronze does not hold"),
    "silver_gap_rows": (Threshold(None, 0), "Bronze rows neither accounted for by Silver nor waiting for it"),
    # a trade never received is a warning: `k2 gaps repair` can fetch it; critical is off by default
    "missing_trades": (Threshold(0, None), "trades missing from open gaps in the trade ids (ops.trade_gaps)"),
}

VARIABLE_KEY = "k2_alert_thresholds"


@dataclass(frozen=True)
class Thresholds:
    per_exchange: dict[str, dict[str, Threshold]]

    def of(self, exchange: str, metric: str) -> Threshold:
        return self.per_exchange[exchange][metric]

    def as_dict(self) -> dict[str, dict[str, dict[str, float | None]]]:
        return {
            ex: {m: {"warning": t.warning, "critical": t.critical} for m, t in metrics.items()}
            for ex, metrics in self.per_exchange.items()
        }


def load_thresholds(exchanges: Iterable[str], *sources: tuple[str, str | Mapping[str, Any] | None]) -> Thresholds:
    """Defaults for ``exchanges``, then each (source name, JSON text or mapping) in order."""
    exchanges = list(exchanges)
    table = {ex: {m: t for m, (t, _) in DEFAULTS.items()} for ex in exchanges}
    for name, raw in sources:
        if raw is None or raw == "":
            continue
        data = _decode(name, raw)
        for key, value in data.items():
            if key == "exchanges":
                if not isinstance(value, dict):
                    raise K2Error(
                        f"{name}: 'exchanges' must be an object of exchange -> metrics",
                        'write e.g. {"exchanges": {"kraken": {"latency_p99_s": {"warning": 20}}}}.',
                    )
                for exchange, metrics in value.items():
                    if exchange not in table:
                        raise K2Error(
                            f"{name}: exchanges.{exchange} is not a configured exchange",
                            f"use one of {', '.join(exchanges)} (K2_EXCHANGES) or remove it.",
                        )
                    _apply(name, f"exchanges.{exchange}", metrics, [table[exchange]])
            else:
                _apply(name, "", {key: value}, list(table.values()))
    for exchange, metrics in table.items():
        for metric, t in metrics.items():
            if t.warning is not None and t.critical is not None and t.warning > t.critical:
                raise K2Error(
                    f"thresholds: {exchange}.{metric} warning {t.warning:g} is above critical {t.critical:g}",
                    "make the warning threshold the lower one.",
                )
    return Thresholds(table)


def configured_thresholds(settings: Settings, variable: str | None = None) -> Thresholds:
    """The thresholds in force: defaults, the settings' file, then the Airflow Variable's JSON."""
    return load_thresholds(
        settings.exchanges,
        ("K2_MONITOR_THRESHOLDS_FILE", read_threshold_file(settings.alerts.thresholds_file)),
        (f"Airflow Variable {VARIABLE_KEY}", variable),
    )


def read_threshold_file(path: str) -> str | None:
    if not path:
        return None
    try:
        return Path(path).read_text()
    except OSError as exc:
        raise K2Error(
            f"cannot read K2_MONITOR_THRESHOLDS_FILE {path}: {exc.strerror}",
            "fix the path or unset K2_MONITOR_THRESHOLDS_FILE for the defaults.",
        ) from None


def _decode(name: str, raw: str | Mapping[str, Any]) -> dict[str, Any]:
    if isinstance(raw, Mapping):
        return dict(raw)
    try:
        data = json.loads(raw)
    except ValueError as exc:
        raise K2Error(
            f"{name} is not valid JSON: {exc}",
            'write an object like {"latency_p99_s": {"warning": 10, "critical": 30}}.',
        ) from None
    if not isinstance(data, dict):
        raise K2Error(
            f"{name} must hold a JSON object, not {type(data).__name__}",
            'write an object like {"latency_p99_s": {"warning": 10, "critical": 30}}.',
        )
    return data


def _apply(name: str, prefix: str, metrics: Any, targets: list[dict[str, Threshold]]) -> None:
    where = f"{prefix}." if prefix else ""
    if not isinstance(metrics, dict):
        raise K2Error(f"{name}: {prefix} must be an object of metric -> levels", f"metrics: {', '.join(DEFAULTS)}.")
    for metric, levels in metrics.items():
        if metric not in DEFAULTS:
            raise K2Error(f"{name}: unknown key {where}{metric}", f"known metrics: {', '.join(DEFAULTS)}.")
        if not isinstance(levels, dict):
            raise K2Error(
                f'{name}: {where}{metric} must be an object like {{"warning": 10, "critical": 30}}',
                "give each level a number, or null to switch it off.",
            )
        changes = {}
        for level, value in levels.items():
            key = f"{where}{metric}.{level}"
            if level not in LEVELS:
                raise K2Error(f"{name}: unknown key {key}", "levels are warning and critical.")
            if value is not None and (isinstance(value, bool) or not isinstance(value, int | float)):
                raise K2Error(f"{name}: {key} is {value!r}, not a number", "give a number, or null to switch it off.")
            if value is not None and (value < 0 or not math.isfinite(value)):
                raise K2Error(
                    f"{name}: {key} is {value}, must be a finite number >= 0",
                    "give a non-negative number, or null to switch it off.",
                )
            changes[level] = None if value is None else float(value)
        for target in targets:
            target[metric] = replace(target[metric], **changes)
