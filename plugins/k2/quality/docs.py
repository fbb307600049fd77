"""Where the quality gates keep their results and Data Docs, and the latest validations found there.

The runtime GX project (``k2.quality.gate``) is a file project under ``$K2_HOME/quality`` with GX's
default stores: each validation is a JSON result under ``uncommitted/validations`` and a Data Docs
page at the same relative path (``.html``) under the local site. Read without importing GX.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from k2.settings import Settings

GX_DIR = "gx"  # what gx.get_context(mode="file") creates under the project root
DOCS_INDEX_REFRESH_S = 6 * 3600.0  # the gates rebuild the Data Docs index at most this often


def quality_root(settings: Settings) -> Path:
    return settings.home / "quality"


def results_dir(settings: Settings) -> Path:
    return quality_root(settings) / GX_DIR / "uncommitted" / "validations"


def data_docs_dir(settings: Settings) -> Path:
    """GX's default ``local_site``: its index.html and a page per validation."""
    return data_docs_dir_of(quality_root(settings))


def data_docs_dir_of(project_root: Path) -> Path:
    return project_root / GX_DIR / "uncommitted" / "data_docs" / "local_site"


def data_docs_file(root: Path, relative: str) -> Path | None:
    """``relative`` resolved inside ``root`` (symbolic links followed); None when it leads outside
    the directory or to no file: what the K2 view may serve of the Data Docs."""
    try:
        base = root.resolve()
        target = (base / relative).resolve()
    except (OSError, ValueError):  # e.g. a NUL byte
        return None
    return target if target.is_relative_to(base) and target.is_file() else None


@dataclass(frozen=True)
class Validation:
    suite: str  # layer.exchange, e.g. silver.binance
    run_name: str  # the batch interval's label
    validated_at: str  # ISO time of the validation
    passed: bool | None  # None: the result file is unreadable
    evaluated: int | None
    failed: int | None
    page: str | None  # the Data Docs page, relative to data_docs_dir; None if not (yet) built


def recent_validations(settings: Settings, limit: int = 30) -> list[Validation]:
    """The latest ``limit`` validations, newest first (a result's folder is named by its run time):
    those every host published (k2.quality.shared) with the catalog on PostgreSQL, else this host's."""
    from k2.quality import shared

    if shared.applies(settings):
        return shared.recent(settings, limit)
    root = results_dir(settings)
    if not root.is_dir():
        return []
    files = [p for p in root.rglob("*.json") if len(p.relative_to(root).parts) >= 4]
    files = sorted(files, key=lambda p: (p.parent.name, str(p)), reverse=True)[:limit]
    docs = data_docs_dir(settings) / "validations"
    return [_validation(path, path.relative_to(root), docs) for path in files]


def validation_of(settings: Settings, result: Path) -> Validation:
    """The validation whose GX result file is ``result`` (under results_dir)."""
    return _validation(result, result.relative_to(results_dir(settings)), data_docs_dir(settings) / "validations")


def _validation(path: Path, relative: Path, docs: Path) -> Validation:
    page = relative.with_suffix(".html")
    try:
        data = json.loads(path.read_text())
        stats = data.get("statistics") or {}
        run = (data.get("meta") or {}).get("run_id") or {}
        passed, evaluated, failed = (
            bool(data.get("success")),
            stats.get("evaluated_expectations"),
            stats.get("unsuccessful_expectations"),
        )
        suite, run_name, at = data.get("suite_name"), run.get("run_name"), run.get("run_time")
    except (OSError, ValueError, AttributeError):
        passed = evaluated = failed = suite = run_name = at = None
    # GX's layout: <suite parts>/<run name>/<run time>/<batch>.json
    return Validation(
        suite=suite or ".".join(relative.parts[:-3]),
        run_name=run_name or relative.parts[-3],
        validated_at=at or relative.parts[-2],
        passed=passed,
        evaluated=evaluated,
        failed=failed,
        page=f"validations/{page.as_posix()}" if (docs / page).is_file() else None,
    )
