"""The housekeeping tasks of the maintenance DAG: K2's logs, the Data Docs, Airflow's metadata DB."""

from __future__ import annotations

import subprocess
from typing import Any

from airflow.sdk import BaseOperator
from airflow.sdk.exceptions import AirflowException

from k2.settings import load_settings


class HousekeepingOperator(BaseOperator):
    """One chore of ``k2.housekeeping`` (``logs``, ``quality`` or ``airflow_db``) with its retention
    from K2_MAINTENANCE_*; returns what it removed."""

    ui_color = "#c7c19f"

    def __init__(self, *, chore: str, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.chore = chore
        self.process: subprocess.Popen | None = None

    def execute(self, context: Any) -> dict[str, Any]:
        from k2 import housekeeping

        settings = load_settings()
        if self.chore == "airflow_db":
            return self._clean_airflow_db(settings)
        report = housekeeping.CHORES[self.chore](settings)
        self.log.info("%s: %s", self.chore, report.to_json())
        return report.to_dict()

    def _clean_airflow_db(self, settings) -> dict[str, Any]:
        from k2 import housekeeping

        command, env, before = housekeeping.airflow_db_clean_command(settings)
        self.log.info("cleaning Airflow's metadata DB of rows older than %s", before)
        self.process = subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        output, _ = self.process.communicate()
        self.log.info("%s", output[-4000:])
        if self.process.returncode != 0:
            raise AirflowException(
                f"`airflow db clean` exited {self.process.returncode}; see the output above. The metadata DB must be "
                "reachable from this worker; the next k2_maintenance run tries again."
            )
        return housekeeping.HousekeepingReport("airflow_db", detail=f"removed rows older than {before}").to_dict()

    def on_kill(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
