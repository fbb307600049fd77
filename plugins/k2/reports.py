"""Typed reports that cross a process boundary: written as JSON by a Spark job, read back by the
Airflow operator that submitted it (and returned as its XCom)."""

from __future__ import annotations

import dataclasses
import json
from dataclasses import asdict
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
