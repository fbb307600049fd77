"""Day-2 housekeeping of what K2 writes outside the lake: its own logs, Airflow's metadata DB and
the Great Expectations results. Run daily by ``k2_maintenance`` (the ``housekeeping_*`` tasks)."""

from __future__ import annotations

import os
import shutil
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from k2.errors import K2Error
from k2.log import get_logger
from k2.reports import JsonReport
from k2.runtime import airflow_sqlite
from k2.settings import Settings, mask_url_password

log = get_logger(__name__)

DAY_S = 86_400.0
# Run history only. `airflow db clean` would also drop `dag` rows (and their versions) not parsed
# within the retention, so a DAG whose processor was down that long would vanish from the UI/API.
AIRFLOW_HISTORY_TABLES = (
    "dag_run", "task_instance", "task_instance_history", "task_reschedule", "xcom", "log", "job",
    "callback", "deadline", "trigger", "import_error", "celery_taskmeta", "celery_tasksetmeta",
)  # fmt: skip


@dataclass(frozen=True)
class HousekeepingReport(JsonReport):
    chore: str
    removed_files: int = 0
    removed_bytes: int = 0
    rotated: list[str] = field(default_factory=list)
    detail: str = ""


def rotate_logs(settings: Settings) -> HousekeepingReport:
    """Rotate every K2 component log (streams, feeds, broker, Airflow components, Spark Connect)
    over K2_MAINTENANCE_LOG_MAX_MB, keeping K2_MAINTENANCE_LOG_KEEP copies, and delete Airflow task
    logs older than K2_MAINTENANCE_LOG_RETENTION_DAYS.

    The writers keep their files open in append mode, so a log is copied and then truncated in
    place: the writer's next line lands at the start of the emptied file. Lines written between the
    copy and the truncation (microseconds) are the price of not restarting anything."""
    m = settings.maintenance
    limit = m.log_max_mb * 1024 * 1024
    rotated, removed, freed = [], 0, 0
    for path in sorted(settings.logs_dir.rglob("*.log")):
        if not path.is_file() or _is_task_log(settings, path) or path.stat().st_size <= limit:
            continue
        for n in range(m.log_keep, 0, -1):  # .4 -> .5 (dropping the oldest), ..., .1 -> .2
            older = path.with_name(f"{path.name}.{n}")
            if n == m.log_keep:
                older.unlink(missing_ok=True)
            elif older.exists():
                older.rename(path.with_name(f"{path.name}.{n + 1}"))
        shutil.copy2(path, path.with_name(f"{path.name}.1"))
        with path.open("r+b") as live:
            live.truncate(0)
        rotated.append(str(path.relative_to(settings.logs_dir)))
    cutoff = time.time() - m.log_retention_days * DAY_S
    for path in list(_task_log_dir(settings).rglob("*")):
        if path.is_file() and path.stat().st_mtime < cutoff:
            freed += path.stat().st_size
            path.unlink()
            removed += 1
    _remove_empty_dirs(_task_log_dir(settings))
    log.info("housekeeping.logs", rotated=len(rotated), task_logs_removed=removed, freed_bytes=freed)
    return HousekeepingReport("logs", removed, freed, rotated)


def prune_quality_results(settings: Settings) -> HousekeepingReport:
    """Delete Great Expectations validation results (and their Data Docs pages) older than
    K2_MAINTENANCE_QUALITY_RETENTION_DAYS, then rebuild the Data Docs index from what is left, so
    the index no longer grows with every validation."""
    root = settings.home / "quality"
    uncommitted = root / "gx" / "uncommitted"
    cutoff = time.time() - settings.maintenance.quality_retention_days * DAY_S
    removed, freed = 0, 0
    for folder in (uncommitted / "validations", uncommitted / "data_docs" / "local_site" / "validations"):
        for path in list(folder.rglob("*")) if folder.exists() else []:
            if path.is_file() and path.stat().st_mtime < cutoff:
                freed += path.stat().st_size
                path.unlink()
                removed += 1
        _remove_empty_dirs(folder)
    if removed and (root / "gx").exists():
        from k2.quality.gate import rebuild_data_docs

        rebuild_data_docs(root)
    log.info("housekeeping.quality", removed=removed, freed_bytes=freed)
    return HousekeepingReport("quality", removed, freed)


def airflow_db_clean_command(settings: Settings) -> tuple[list[str], dict[str, str], str]:
    """``airflow db clean`` of DAG runs, task instances, logs and the like (never the DAGs) older than
    K2_MAINTENANCE_AIRFLOW_DB_RETENTION_DAYS (about 1,700 runs a day land there), without archive
    tables: the command, its environment and the cut-off. Airflow 3 runs a task with the metadata DB
    blocked (its supervisor sets the task's AIRFLOW__DATABASE__SQL_ALCHEMY_CONN to
    ``airflow-db-not-allowed:///``), so the command gets the deployment's DB from K2_AIRFLOW_DB_URI,
    which under `k2 up` is the database K2 gave Airflow."""
    uri = settings.airflow.db_uri
    # derived: the SQLite default, or K2's own PostgreSQL (K2_POSTGRES_EMBEDDED), which is Airflow's DB
    default_sqlite = settings.is_derived("airflow_db_uri") and uri.startswith("sqlite:///")
    if default_sqlite and not Path(uri.removeprefix("sqlite:///")).is_file():
        raise K2Error(
            f"Airflow's metadata DB is not {mask_url_password(uri)}, the default under `k2 up`, and tasks cannot "
            "read it from Airflow",
            "set K2_AIRFLOW_DB_URI to this deployment's metadata DB (sql_alchemy_conn) where the workers run.",
        )
    before = time.time() - settings.maintenance.airflow_db_retention_days * DAY_S
    stamp = time.strftime("%Y-%m-%dT%H:%M:%S+00:00", time.gmtime(before))
    airflow = str(Path(sys.executable).parent / "airflow")
    env = {k: v for k, v in os.environ.items() if k not in airflow_sqlite.DATABASE_KEYS}
    env.update(airflow_sqlite.database_env(uri))
    command = [airflow, "db", "clean", "--clean-before-timestamp", stamp, "--tables", ",".join(AIRFLOW_HISTORY_TABLES),
               "--skip-archive", "--error-on-cleanup-failure", "--yes"]  # fmt: skip
    return command, env, stamp


CHORES = {"logs": rotate_logs, "quality": prune_quality_results}  # airflow_db: the operator runs the command
HOUSEKEEPING_CHORES = (*CHORES, "airflow_db")


def _task_log_dir(settings: Settings) -> Path:
    return settings.logs_dir / "airflow" / "tasks"


def _is_task_log(settings: Settings, path: Path) -> bool:
    return _task_log_dir(settings) in path.parents


def _remove_empty_dirs(root: Path) -> None:
    if not root.exists():
        return
    for folder in sorted((p for p in root.rglob("*") if p.is_dir()), key=lambda p: len(p.parts), reverse=True):
        if not any(folder.iterdir()):
            folder.rmdir()
