"""K2's hooks. Each owns one Airflow connection, defined by the deployment (environment, secrets
backend, UI) or else derived from K2's settings, so a fresh install needs no connection set up."""

from __future__ import annotations

from typing import Any

from airflow.sdk import Connection
from airflow.sdk.exceptions import AirflowNotFoundException


class SettingsDefaultConnection:
    """Mixin for a hook with ``settings`` and a ``default_connection(settings, conn_id)``: the
    deployment's connection when it defines one, else the default from the settings."""

    settings: Any

    def get_connection(self, conn_id: str) -> Connection:  # type: ignore[override]
        try:
            return super().get_connection(conn_id)  # type: ignore[misc]
        except AirflowNotFoundException:
            return self.default_connection(self.settings, conn_id)  # type: ignore[attr-defined]
