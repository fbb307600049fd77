"""Run in a fresh interpreter by the integrity tests: parse every DAG file and report as JSON."""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

HEAVY = ("pyspark", "great_expectations", "confluent_kafka", "pyiceberg")


def main(dags_folder: str) -> None:
    from airflow.dag_processing.dagbag import DagBag  # imported first: its cost is not the DAG files'

    report: dict = {"files": {}, "dags": {}, "import_errors": {}}
    for path in sorted(Path(dags_folder).glob("*.py")):
        before = set(sys.modules)
        # CPU seconds, not wall time: what a DAG file costs the DAG processor, whatever else runs
        started = time.process_time()
        bag = DagBag(dag_folder=str(path))
        spent = time.process_time() - started
        loaded = set(sys.modules) - before
        report["files"][path.name] = {
            "parse_cpu_s": spent,
            "heavy_modules": sorted({m.split(".")[0] for m in loaded if m.split(".")[0] in HEAVY}),
        }
        report["import_errors"].update(bag.import_errors)
        for dag_id, dag in bag.dags.items():
            tasks = dag.tasks
            report["dags"][dag_id] = {
                "file": path.name,
                "description": dag.description,
                "tags": sorted(dag.tags),
                "owners": sorted({t.owner for t in tasks}),
                "retries": [t.retries for t in tasks],
                "task_count": len(tasks),
                "has_cycle": _has_cycle(dag),
                "execution_timeout_s": {
                    t.task_id: t.execution_timeout.total_seconds() if t.execution_timeout else None for t in tasks
                },
                "operators": {t.task_id: type(t).__name__ for t in tasks},
                "param_schemas": {name: dag.params.get_param(name).schema for name in dag.params},
                "first_run_in_s": _first_run_in_s(dag),
            }
    print(json.dumps(report))


def _first_run_in_s(dag) -> float | None:
    """Seconds from now to the first scheduled run of the DAG as just unpaused (no runs yet)."""
    from airflow.serialization.decoders import decode_timetable
    from airflow.serialization.encoders import encode_timetable
    from airflow.timetables.base import TimeRestriction

    timetable = decode_timetable(encode_timetable(dag.timetable))  # as the scheduler sees it
    restriction = TimeRestriction(earliest=dag.start_date, latest=None, catchup=dag.catchup)
    info = timetable.next_dagrun_info(last_automated_data_interval=None, restriction=restriction)
    return None if info is None else info.run_after.timestamp() - time.time()


def _has_cycle(dag) -> bool:
    from airflow.sdk.exceptions import AirflowDagCycleException

    try:
        from airflow.sdk.definitions._internal.dag_cycle_tester import check_cycle
    except ImportError:  # location differs between releases; topological sort raises on cycles too
        try:
            dag.topological_sort()
        except AirflowDagCycleException:
            return True
        return False
    try:
        check_cycle(dag)
    except AirflowDagCycleException:
        return True
    return False


if __name__ == "__main__":
    main(sys.argv[1])
