"""Airflow's REST API for the stack's own calls (unpause, trigger, follow a run): an HTTP request
instead of an `airflow` CLI process, which costs seconds of CPU each on a small machine."""

from __future__ import annotations

import http.client
import json
import ssl
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable
from typing import Any

from k2.errors import K2Error
from k2.log import get_logger
from k2.runtime import airflow_sqlite
from k2.runtime.airflow import AirflowServices

log = get_logger(__name__)
# on SQLite a request may wait out the metadata DB's busy timeout before it answers 500: a client
# that gave up sooner would abandon a call that was about to answer
DEFAULT_TIMEOUT_S = airflow_sqlite.BUSY_TIMEOUT_S + 30.0


class AirflowApi:
    """Calls to the API server at ``url`` as the user ``credentials()`` names (username, password),
    read at the first call; ``logs`` is where an operator looks when a call fails."""

    def __init__(
        self,
        url: str,
        credentials: Callable[[], tuple[str, str]],
        *,
        ssl_context: ssl.SSLContext | None = None,
        logs: str = "the Airflow API server's log",
        timeout_s: float = DEFAULT_TIMEOUT_S,
    ) -> None:
        self.url, self.credentials, self.ssl_context = url, credentials, ssl_context
        self.logs, self.timeout_s = logs, timeout_s
        self._token = ""

    @classmethod
    def of(cls, airflow: AirflowServices, timeout_s: float = DEFAULT_TIMEOUT_S) -> AirflowApi:
        """The API of the Airflow K2 runs, as its admin."""
        return cls(
            airflow.url,
            lambda: (airflow.settings.airflow.admin_user, airflow.password()),
            ssl_context=airflow.ssl_context(),
            logs=str(airflow.log_dir),
            timeout_s=timeout_s,
        )

    def _token_now(self) -> str:
        if not self._token:
            username, password = self.credentials()
            body = {"username": username, "password": password}
            self._token = self._send("POST", "/auth/token", body, auth=False)["access_token"]
        return self._token

    def _send(self, method: str, path: str, body: dict | None = None, *, auth: bool = True, attempts: int = 5) -> Any:
        """One API call; a server error (on SQLite: "database is locked" while the scheduler
        writes), a refused or dropped connection or an answer that does not come in time is retried
        with back-off, since every call is idempotent."""
        delay = 1.0
        for attempt in range(1, attempts + 1):
            try:
                return self._send_once(method, path, body, auth=auth)
            # OSError: urllib's URLError and HTTPError, and a timeout or reset while the answer is read,
            # which urlopen raises unwrapped
            except (OSError, http.client.HTTPException) as exc:
                code = getattr(exc, "code", None)
                if (code is not None and code < 500) or attempt == attempts:
                    raise self._error(method, path, exc) from exc
                log.warning("airflow.api_retry", method=method, path=path, attempt=attempt, error=str(exc)[:200])
                time.sleep(delay)
                delay *= 2
        raise AssertionError("unreachable")

    def _send_once(self, method: str, path: str, body: dict | None, *, auth: bool) -> Any:
        headers = {"Content-Type": "application/json"}
        if auth:
            headers["Authorization"] = f"Bearer {self._token_now()}"
        data = json.dumps(body).encode() if body is not None else None
        request = urllib.request.Request(f"{self.url}{path}", data, headers, method=method)
        with urllib.request.urlopen(request, timeout=self.timeout_s, context=self.ssl_context) as response:
            return json.loads(response.read() or b"{}")

    def _error(self, method: str, path: str, exc: Exception) -> K2Error:
        if isinstance(exc, urllib.error.HTTPError):
            what = f"answered {exc.code}: {exc.read()[:500].decode(errors='replace')}"
        else:
            what = f"got no answer: {exc or type(exc).__name__}"
        return K2Error(f"Airflow API {method} {path} {what}", f"check the API server log in {self.logs}.")

    def dag_ids(self) -> set[str]:
        """DAGs the DAG processor has registered."""
        return {d["dag_id"] for d in self._send("GET", "/api/v2/dags?limit=1000")["dags"]}

    def unpause(self, dag_id: str) -> None:
        self._send("PATCH", f"/api/v2/dags/{urllib.parse.quote(dag_id)}", {"is_paused": False})

    def trigger(self, dag_id: str, run_id: str, conf: dict | None = None) -> None:
        """Create the run; a run of that id already there (an earlier attempt got through) is it."""
        body = {"dag_run_id": run_id, "logical_date": None, "conf": conf or {}}
        try:
            self._send("POST", f"/api/v2/dags/{urllib.parse.quote(dag_id)}/dagRuns", body)
        except K2Error as exc:
            if "answered 409" not in exc.cause:
                raise

    def dag_runs(self, dag_id: str) -> dict[str, str]:
        """Every run of the DAG: its run id and state."""
        runs = self._send("GET", f"/api/v2/dags/{urllib.parse.quote(dag_id)}/dagRuns?limit=1000")["dag_runs"]
        return {r["dag_run_id"]: r["state"] for r in runs}

    def run_state(self, dag_id: str, run_id: str) -> str:
        return self._send("GET", f"/api/v2/dags/{dag_id}/dagRuns/{run_id}").get("state", "")

    def task_instances(self, dag_id: str, run_id: str) -> list[dict]:
        return self._send("GET", f"/api/v2/dags/{dag_id}/dagRuns/{run_id}/taskInstances")["task_instances"]

    def return_value(self, dag_id: str, run_id: str, task_id: str) -> Any:
        path = f"/api/v2/dags/{dag_id}/dagRuns/{run_id}/taskInstances/{task_id}/xcomEntries/return_value"
        value = self._send("GET", path).get("value")
        return json.loads(value) if isinstance(value, str) else value
