"""K2's Airflow plugin: serves the Prometheus metrics at ``/k2/metrics`` on the API server.

Registered through the ``airflow.plugins`` entry point (pyproject.toml), so any Airflow with K2
installed loads it; no copy belongs in a plugins folder (Airflow would refuse the second ``k2``)."""

from __future__ import annotations

from airflow.plugins_manager import AirflowPlugin
from fastapi import FastAPI
from fastapi.responses import PlainTextResponse

from k2.airflow.ui import EXTERNAL_VIEW, view_app

metrics_app = FastAPI(title="K2 metrics", docs_url=None, redoc_url=None, openapi_url=None)


@metrics_app.get("/metrics", response_class=PlainTextResponse)
def metrics() -> PlainTextResponse:
    """The latest k2_monitoring figures in Prometheus text format (scrape every minute)."""
    from k2.settings import load_settings

    path = load_settings().monitoring_dir / "k2.prom"
    try:
        return PlainTextResponse(path.read_text(), media_type="text/plain; version=0.0.4")
    except FileNotFoundError:
        return PlainTextResponse(
            "# no measurement yet: the k2_monitoring DAG writes one every minute\n", status_code=503
        )


metrics_app.mount("/ui", view_app)  # the K2 view (k2.airflow.ui), behind Airflow's login


class K2Plugin(AirflowPlugin):
    name = "k2"
    fastapi_apps = [{"app": metrics_app, "url_prefix": "/k2", "name": "K2 Prometheus metrics"}]
    external_views = [EXTERNAL_VIEW]
