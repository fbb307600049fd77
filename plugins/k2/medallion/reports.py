"""The batch job's typed reports: written as JSON by the Spark job, read back by the Airflow
operator that submitted it (and returned as its XCom)."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from k2.reports import JsonReport


@contextmanager
def timed(steps: dict[str, float], name: str) -> Iterator[None]:
    """Adds the block's wall time to ``steps[name]``: where a task's time went, in its log and XCom."""
    started = time.monotonic()
    try:
        yield
    finally:
        steps[name] = round(steps.get(name, 0.0) + time.monotonic() - started, 2)


def add_steps(total: dict[str, float], piece: dict[str, float]) -> None:
    for name, seconds in piece.items():
        total[name] = round(total.get(name, 0.0) + seconds, 2)


@dataclass
class SilverReport(JsonReport):
    """Every item of the interval's Bronze rows is exactly one of: new, duplicate, dead letter. Each
    quantity is counted on its own (see ``k2.medallion.silver``), so ``balances`` can fail."""

    exchange: str
    start: str
    end: str
    bronze_rows: int = 0
    items: int = 0
    silver_new: int = 0  # trades the write committed
    duplicates: int = 0  # duplicates_in_interval + duplicates_in_silver
    dead_letters: int = 0  # items rejected (dead_letters_new + dead_letters_known)
    duplicates_in_interval: int = 0  # later copies of a trade of the interval
    duplicates_in_silver: int = 0  # first copies of trades Silver already held
    dead_letters_new: int = 0  # dead letters the write committed
    dead_letters_known: int = 0  # dead letters an earlier run of the interval recorded
    dead_letter_reasons: dict[str, int] = field(default_factory=dict)
    quality: dict[str, dict[str, Any]] = field(default_factory=dict)  # layer -> QualityReport.summary()
    duration_s: float = 0.0
    layer: str = "silver"
    connection_events: int = 0  # Bronze rows that are feed connection events (ops.connection_events)
    gaps_open: int = 0  # trade-id gaps found around the interval's trades (ops.trade_gaps)
    gaps_closed: int = 0  # recorded gaps whose missing ids are in Silver now
    pieces: list[str] = field(default_factory=list)  # ranges of Bronze ingestion time processed
    pieces_left: int = 0  # ranges a catch-up left to the next runs
    steps_s: dict[str, float] = field(default_factory=dict)  # step -> wall seconds (k2.medallion.silver)

    COUNTS = (
        "bronze_rows",
        "items",
        "silver_new",
        "duplicates",
        "dead_letters",
        "duplicates_in_interval",
        "duplicates_in_silver",
        "dead_letters_new",
        "dead_letters_known",
        "connection_events",
        "gaps_open",
        "gaps_closed",
    )

    def add(self, piece: SilverReport) -> None:
        """Adds one piece's counts (each piece balanced on its own before)."""
        for name in self.COUNTS:
            setattr(self, name, getattr(self, name) + getattr(piece, name))
        for reason, n in piece.dead_letter_reasons.items():
            self.dead_letter_reasons[reason] = self.dead_letter_reasons.get(reason, 0) + n
        self.quality.update(_per_piece(piece))
        add_steps(self.steps_s, piece.steps_s)

    def balances(self) -> bool:
        return self.silver_new + self.duplicates + self.dead_letters == self.items

    def dead_letters_stored(self) -> bool:
        """Every dead letter of the interval is in ``silver.dead_letter``: written now or before."""
        return self.dead_letters_new + self.dead_letters_known == self.dead_letters

    def lines(self) -> list[str]:
        counts = (
            f"bronze_rows={self.bronze_rows} items={self.items} silver_new={self.silver_new} "
            f"duplicates={self.duplicates} (in_interval={self.duplicates_in_interval} "
            f"in_silver={self.duplicates_in_silver}) dead_letters={self.dead_letters} "
            f"(new={self.dead_letters_new} known={self.dead_letters_known}) "
            f"reasons={json.dumps(self.dead_letter_reasons, sort_keys=True)} "
            f"connection_events={self.connection_events} gaps_open={self.gaps_open} gaps_closed={self.gaps_closed}"
        )
        return [counts, *_steps_line(self), *_pieces_line(self), *quality_lines(self.quality)]


@dataclass
class GoldReport(JsonReport):
    exchange: str
    start: str
    end: str
    bars: dict[str, int] = field(default_factory=dict)  # bar width -> bars recomputed
    quality: dict[str, dict[str, Any]] = field(default_factory=dict)
    duration_s: float = 0.0
    layer: str = "gold"
    pieces: list[str] = field(default_factory=list)
    pieces_left: int = 0
    steps_s: dict[str, float] = field(default_factory=dict)  # step -> wall seconds (k2.medallion.gold)

    def add(self, piece: GoldReport) -> None:
        for width, n in piece.bars.items():
            self.bars[width] = self.bars.get(width, 0) + n
        self.quality.update(_per_piece(piece))
        add_steps(self.steps_s, piece.steps_s)

    def lines(self) -> list[str]:
        bars = f"bars={json.dumps(self.bars, sort_keys=True)}"
        return [bars, *_steps_line(self), *_pieces_line(self), *quality_lines(self.quality)]


MedallionReport = SilverReport | GoldReport


def medallion_report(data: dict[str, Any]) -> MedallionReport:
    return (SilverReport if data.get("layer") == "silver" else GoldReport).from_dict(data)


def _per_piece(piece: SilverReport | GoldReport) -> dict[str, dict[str, Any]]:
    """A piece's gate results, keyed by layer and piece when the run had several."""
    return {f"{layer} {piece.start}..{piece.end}": result for layer, result in piece.quality.items()}


def _steps_line(report: SilverReport | GoldReport) -> list[str]:
    return [f"steps_s={json.dumps(report.steps_s)}"] if report.steps_s else []


def _pieces_line(report: SilverReport | GoldReport) -> list[str]:
    left = f" ({report.pieces_left} more left to the next runs)" if report.pieces_left else ""
    return [f"pieces={len(report.pieces)}{left}: {', '.join(report.pieces)}"] if report.pieces else []


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
