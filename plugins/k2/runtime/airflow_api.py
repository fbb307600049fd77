"""Airflow's REST API for the stack's own calls (unpause, trigger, follow a run): an HTTP request
instead of an `airflow` CLI process, which costs seconds of CPU each on a small machine."""

from __future__ import annotations

import json
import urllib.error
import urllib.parse
import urllib.request
from typing import Any

from k2.errors import K2Error
from k2.runtime.airflow import AirflowServices


class AirflowApi:
    def __init__(self, airflow: AirflowServices, timeout_s: float = 30.0) -> None:
        self.airflow, self.timeout_s = airflow, timeout_s
        self._token = ""

    def _token_now(self) -> str:
        if not self._token:
            body = {"username": self.airflow.settings.airflow.admin_user, "password": self.airflow.password()}
            self._token = self._send("POST", "/auth/token", body, auth=False)["access_token"]
        return self._token

    def _send(self, method: str, path: str, body: dict | None = None, *, auth: bool = True) -> Any:
        headers = {"Content-Type": "application/json"}
        if auth:
            headers["Authorization"] = f"Bearer {self._token_now()}"
        data = json.dumps(body).encode() if body is not None else None
        request = urllib.request.Request(f"{self.airflow.url}{path}", data, headers, method=method)
        try:
            with urllib.request.urlopen(request, timeout=self.timeout_s) as response:
                return json.loads(response.read() or b"{}")
        except urllib.error.HTTPError as exc:
            detail = exc.read()[:500].decode(errors="replace")
            raise K2Error(
                f"Airflow API {method} {path} answered {exc.code}: {detail}",
                f"check the API server log in {self.airflow.log_dir}.",
            ) from exc

    def dag_ids(self) -> set[str]:
        """DAGs the DAG processor has registered."""
        return {d["dag_id"] for d in self._send("GET", "/api/v2/dags?limit=1000")["dags"]}

    def unpause(self, dag_id: str) -> None:
        self._send("PATCH", f"/api/v2/dags/{urllib.parse.quote(dag_id)}", {"is_paused": False})

    def trigger(self, dag_id: str, run_id: str, conf: dict | None = None) -> None:
        body = {"dag_run_id": run_id, "logical_date": None, "conf": conf or {}}
        self._send("POST", f"/api/v2/dags/{urllib.parse.quote(dag_id)}/dagRuns", body)

    def run_state(self, dag_id: str, run_id: str) -> str:
        return self._send("GET", f"/api/v2/dags/{dag_id}/dagRuns/{run_id}").get("state", "")

    def task_instances(self, dag_id: str, run_id: str) -> list[dict]:
        return self._send("GET", f"/api/v2/dags/{dag_id}/dagRuns/{run_id}/taskInstances")["task_instances"]

    def return_value(self, dag_id: str, run_id: str, task_id: str) -> Any:
        path = f"/api/v2/dags/{dag_id}/dagRuns/{run_id}/taskInstances/{task_id}/xcomEntries/return_value"
        value = self._send("GET", path).get("value")
        return json.loads(value) if isinstance(value, str) else value
