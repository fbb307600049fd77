"""The batch job's typed reports: written as JSON by the Spark job, read back by the Airflow
operator that submitted it (and returned as its XCom)."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from k2.reports import JsonReport


@dataclass
class SilverReport(JsonReport):
    """Every item of the interval's Bronze rows is exactly one of: new, duplicate, dead letter."""

    exchange: str
    start: str
    end: str
    bronze_rows: int = 0
    items: int = 0
    silver_new: int = 0
    duplicates: int = 0
    dead_letters: int = 0
    dead_letter_reasons: dict[str, int] = field(default_factory=dict)
    quality: dict[str, dict[str, Any]] = field(default_factory=dict)  # layer -> QualityReport.summary()
    duration_s: float = 0.0
    layer: str = "silver"

    def balances(self) -> bool:
        return self.silver_new + self.duplicates + self.dead_letters == self.items

    def lines(self) -> list[str]:
        counts = (
            f"bronze_rows={self.bronze_rows} items={self.items} silver_new={self.silver_new} "
            f"duplicates={self.duplicates} dead_letters={self.dead_letters} "
            f"reasons={json.dumps(self.dead_letter_reasons, sort_keys=True)}"
        )
        return [counts, *quality_lines(self.quality)]


@dataclass
class GoldReport(JsonReport):
    exchange: str
    start: str
    end: str
    bars: dict[str, int] = field(default_factory=dict)  # bar width -> bars recomputed
    quality: dict[str, dict[str, Any]] = field(default_factory=dict)
    duration_s: float = 0.0
    layer: str = "gold"

    def lines(self) -> list[str]:
        return [f"bars={json.dumps(self.bars, sort_keys=True)}", *quality_lines(self.quality)]


MedallionReport = SilverReport | GoldReport


def medallion_report(data: dict[str, Any]) -> MedallionReport:
    return (SilverReport if data.get("layer") == "silver" else GoldReport).from_dict(data)


def quality_lines(quality: dict[str, dict[str, Any]]) -> list[str]:
    """What the task log shows of each gate: verdict, counts, findings, where the results are kept."""
    lines = []
    for layer, result in quality.items():
        if not isinstance(result, dict) or "passed" not in result:
            continue
        lines.append(
            f"quality {layer}: passed={result['passed']} evaluated={result['evaluated']} "
            f"critical={len(result['critical'])} warnings={len(result['warnings'])} "
            f"results={result['docs'] or 'K2_HOME/quality'}"
        )
        findings = result["critical"] + result["warnings"]
        lines += [f"  {f['severity']}: {f['expectation']}: {f['detail']}" for f in findings]
    return lines
