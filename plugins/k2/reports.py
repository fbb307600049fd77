"""Typed reports that cross a process boundary: written as JSON by a Spark job, read back by the
Airflow operator that submitted it (and returned as its XCom)."""

from __future__ import annotations

import dataclasses
import json
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Self


class JsonReport:
    """JSON round trip for the report dataclasses (nested dataclasses included)."""

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)  # type: ignore[call-overload]

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), default=str, indent=2)

    def write(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(self.to_json())

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Self:
        names = {f.name for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
        return cls(**{k: v for k, v in data.items() if k in names})

    @classmethod
    def read(cls, path: Path) -> Self:
        return cls.from_dict(json.loads(path.read_text()))


# exit status of a job that failed in a way a retry would repeat (its report file holds a JobFailure)
EXIT_FAILED_FOR_GOOD = 3


@dataclass
class JobFailure(JsonReport):
    """A failure the same inputs would repeat (wrong parameters, a critical quality gate). The job
    writes it to its report file and exits with ``EXIT_FAILED_FOR_GOOD``; the operator, in another
    process, reads it back and fails the task without retrying (one attempt, one alert)."""

    failure: str  # parameters / quality
    cause: str
    fix: str = ""
    alerted: bool = False  # the job sent the alert itself (a quality gate does, with its details)

    @property
    def message(self) -> str:
        return f"{self.failure} failure (not retried): {self.cause}" + (f"\n  fix: {self.fix}" if self.fix else "")

    @classmethod
    def found_in(cls, path: Path) -> JobFailure | None:
        """The failure a job left in its report file, if that is what the file holds."""
        try:
            data = json.loads(path.read_text())
        except (OSError, ValueError):
            return None
        return cls.from_dict(data) if isinstance(data, dict) and "failure" in data else None
