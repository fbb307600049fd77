"""Iceberg table maintenance through Spark's stored procedures: compact small files, rewrite
manifests, expire old snapshots, delete orphan files. Safe while the Bronze streams and the batch
commit: compaction only replaces files with equal rows (concurrent appends do not conflict), a
commit conflict is retried, and orphan deletion spares files younger than a commit could be."""

from __future__ import annotations

import datetime as dt
import time
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any, Self

from k2.lake.names import qualified
from k2.log import get_logger
from k2.reports import JsonReport
from k2.settings import Settings

if TYPE_CHECKING:
    from pyspark.sql import SparkSession

log = get_logger("k2.maintenance")

# commit conflicts with the streams and the batch, files that vanish while a step lists or reads
# them (a concurrent commit replaced them), and a metadata-table scan whose table moved on between
# planning and scanning: all pass when the step runs again on the new state
CONFLICTS = (
    "CommitFailedException",
    "ValidationException",
    "CommitStateUnknownException",
    "NotFoundException",
    "FileNotFoundException",
    "Failed to enforce scan consistency",
)


@dataclass
class TableMaintenance:
    table: str
    data_files_before: int = 0
    data_files_after: int = 0
    rewritten_files: int = 0
    added_files: int = 0
    rewritten_manifests: int = 0
    expired_snapshots: int = 0
    orphans_removed: int = 0
    conflicts_retried: int = 0
    duration_s: float = 0.0
    error: str = ""
    steps: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class MaintenanceReport(JsonReport):
    namespace: str
    tables: list[TableMaintenance] = field(default_factory=list)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Self:
        return cls(namespace=data["namespace"], tables=[TableMaintenance(**t) for t in data.get("tables", [])])

    @property
    def failed(self) -> list[str]:
        return [t.table for t in self.tables if t.error]

    def lines(self) -> list[str]:
        return [
            f"{t.table}: data files {t.data_files_before} -> {t.data_files_after} (rewrote {t.rewritten_files} "
            f"into {t.added_files}), manifests rewritten {t.rewritten_manifests}, snapshots expired "
            f"{t.expired_snapshots}, orphans removed {t.orphans_removed}, conflicts retried "
            f"{t.conflicts_retried}, {t.duration_s}s{f', ERROR {t.error}' if t.error else ''}"
            for t in self.tables
        ]


def maintain_table(
    spark: SparkSession, settings: Settings, identifier: str, *, now: dt.datetime | None = None, attempts: int = 5
) -> TableMaintenance:
    """All four steps on one table (``namespace.name`` in K2's catalog), each retried on commit
    conflicts. Returns what was done; a step that still fails is recorded, not raised, so one bad
    table does not stop the others."""
    now = now or dt.datetime.now(dt.UTC)
    table = qualified(settings.lake.catalog_name, identifier)
    done = TableMaintenance(identifier)
    started = time.monotonic()
    call = f"CALL {qualified(settings.lake.catalog_name, 'system')}"
    expire_before = now - dt.timedelta(hours=settings.maintenance.snapshot_retention_h)
    orphans_before = _sql_time(now - dt.timedelta(hours=settings.maintenance.orphan_age_h))
    target = settings.maintenance.target_file_mb * 1024 * 1024
    steps = [
        (
            "rewrite_data_files",
            f"""{call}.rewrite_data_files(table => '{identifier}', strategy => 'binpack',
            options => map('target-file-size-bytes', '{target}', 'min-input-files', '2',
                           'partial-progress.enabled', 'true', 'partial-progress.max-commits', '10'))""",
        ),
        ("rewrite_manifests", f"{call}.rewrite_manifests(table => '{identifier}')"),
        (
            "expire_snapshots",
            _expire_statement(settings, identifier, expire_before, settings.maintenance.min_snapshots),
        ),
        ("remove_orphan_files", f"{call}.remove_orphan_files(table => '{identifier}', older_than => {orphans_before})"),
    ]
    try:
        done.data_files_before = _data_files(spark, table, identifier, attempts, done)
        for name, statement in steps:
            rows = _with_retries(spark, statement, name, identifier, attempts, done)
            _record(done, name, rows)
            done.steps.append(name)
        done.data_files_after = _data_files(spark, table, identifier, attempts, done)
    except Exception as exc:  # recorded and reported; the caller fails the task after the other tables
        done.error = _first_line(exc)
        log.error("maintenance.failed", table=identifier, step=len(done.steps), error=done.error)
    done.duration_s = round(time.monotonic() - started, 2)
    log.info("maintenance.table", **{k: v for k, v in done.as_dict().items() if k != "steps"})
    return done


def _expire_statement(settings: Settings, identifier: str, older_than: dt.datetime, retain_last: int) -> str:
    return (
        f"CALL {qualified(settings.lake.catalog_name, 'system')}.expire_snapshots(table => '{identifier}', "
        f"older_than => {_sql_time(older_than)}, retain_last => {max(1, retain_last)})"
    )


def _with_retries(
    spark: SparkSession, statement: str, step: str, identifier: str, attempts: int, done: TableMaintenance
) -> list:
    for attempt in range(1, attempts + 1):
        try:
            return spark.sql(statement).collect()
        except Exception as exc:
            if attempt == attempts or not any(c in str(exc) for c in CONFLICTS):
                raise
            done.conflicts_retried += 1
            delay = min(30.0, 0.5 * 2**attempt)
            log.warning(
                "maintenance.conflict_retry",
                table=identifier,
                step=step,
                attempt=attempt,
                delay_s=delay,
                error=_first_line(exc),
            )
            time.sleep(delay)  # back-off before retrying a conflicting commit
    return []


def _record(done: TableMaintenance, step: str, rows: list) -> None:
    if step == "rewrite_data_files" and rows:
        done.rewritten_files = rows[0]["rewritten_data_files_count"]
        done.added_files = rows[0]["added_data_files_count"]
    elif step == "rewrite_manifests" and rows:
        done.rewritten_manifests = rows[0]["rewritten_manifests_count"]
    elif step == "expire_snapshots" and rows:
        done.expired_snapshots = int(rows[0]["deleted_manifest_lists_count"])  # one manifest list per snapshot
    elif step == "remove_orphan_files":  # one row per deleted file
        done.orphans_removed = len(rows)


def _data_files(spark: SparkSession, table: str, identifier: str, attempts: int, done: TableMaintenance) -> int:
    rows = _with_retries(
        spark,
        f"SELECT count(*) AS n FROM {table}.files WHERE content = 0",
        "count_data_files",
        identifier,
        attempts,
        done,
    )
    return rows[0]["n"]


def _sql_time(moment: dt.datetime) -> str:
    return f"TIMESTAMP '{moment.astimezone(dt.UTC).strftime('%Y-%m-%d %H:%M:%S.%f')}'"


def _first_line(exc: BaseException) -> str:
    """The cause in one line: for errors from the JVM, the Java exception, not Py4J's wrapper line."""
    java = getattr(exc, "java_exception", None)
    if java is not None:
        return str(java.toString())[:500]
    text = str(exc).strip().splitlines()
    return text[0][:500] if text else type(exc).__name__
