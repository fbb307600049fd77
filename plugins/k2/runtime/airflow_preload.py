"""An Airflow component that forks K2's task processes (the scheduler with the LocalExecutor, a
Celery worker), started with the modules K2's batch tasks use already imported.

Both fork every task from themselves: the LocalExecutor's workers fork from the scheduler, Celery's
pool from its worker, and Airflow's task supervisor forks the task (a bare ``os.fork`` on Linux). A
task then inherits Great Expectations copy-on-write instead of importing it: 6.1 s of CPU on an idle
core, and 10-14 s of a `k2 up` batch task's first quality gate under the stack's load (2026-12-04).
The import starts no thread, so forking after it is as safe as Airflow's own forks.
"""

from __future__ import annotations

import importlib
import sys

# what every Silver and Gold task imports; Great Expectations brings pandas, pyarrow and pyspark
TASK_MODULES = ("great_expectations",)


def main() -> None:
    for name in TASK_MODULES:
        importlib.import_module(name)
    from airflow.__main__ import main as airflow_main

    sys.argv[0] = "airflow"  # argparse's program name in usage and error messages
    airflow_main()


if __name__ == "__main__":
    main()
