"""The K2 view in the Airflow UI: per-stream status, latency and lag over time, open incidents,
reconciliation and each quality run's Data Docs, served by the API server at ``/k2/ui/`` behind
Airflow's own login, and shown inside Airflow's UI as the top-level "K2" nav item (an iframe).

Airflow imports plugins in every process (scheduler, task runners), but only the API server
serves this view: the plugin mounts ``view_app``, which imports the real app (``k2.airflow.ui.app``,
with Airflow's API security and K2's readers) on its first request.
"""

from __future__ import annotations

import importlib
from typing import Any

URL_PREFIX = "/k2/ui"

# Airflow's external view: a nav item whose page frames ``href`` (``/plugin/k2`` in the UI)
EXTERNAL_VIEW = {
    "name": "K2",
    "href": f"{URL_PREFIX}/",
    "url_route": "k2",
    "destination": "nav",
    "nav_top_level": True,
}


class LazyApp:
    """An ASGI app that imports and builds the real one on its first request."""

    def __init__(self, target: str) -> None:
        self.target = target  # "module:attribute"
        self._app: Any = None

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if self._app is None:
            module, _, name = self.target.partition(":")
            self._app = getattr(importlib.import_module(module), name)
        await self._app(scope, receive, send)


view_app = LazyApp("k2.airflow.ui.app:app")
