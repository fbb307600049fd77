"""K2's Airflow plugin: serves the Prometheus metrics at ``/k2/metrics`` on the API server, to a
scraper with K2's scrape token or a logged-in user (k2.monitoring.scrape_auth), and the K2 view.

Registered through the ``airflow.plugins`` entry point (pyproject.toml), so any Airflow with K2
installed loads it; no copy belongs in a plugins folder (Airflow would refuse the second ``k2``)."""

from __future__ import annotations

from typing import Annotated

from airflow.plugins_manager import AirflowPlugin
from fastapi import Depends, FastAPI, Request
from fastapi.responses import PlainTextResponse
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from k2.airflow.ui import EXTERNAL_VIEW, view_app

metrics_app = FastAPI(title="K2 metrics", docs_url=None, redoc_url=None, openapi_url=None)


BearerDep = Annotated[HTTPAuthorizationCredentials | None, Depends(HTTPBearer(auto_error=False))]


async def require_scraper_or_user(request: Request, bearer: BearerDep) -> None:
    """The scrape token, else Airflow's own login (its JWT as bearer or the UI's cookie); 401 otherwise."""
    from airflow.api_fastapi.core_api.security import get_user  # heavy: on the first request, not at plugin load

    from k2.monitoring.scrape_auth import is_scraper
    from k2.settings import load_settings

    if bearer is not None and is_scraper(load_settings(), bearer.credentials):
        return
    await get_user(request, None, bearer)  # raises 401 without a valid login


@metrics_app.get("/metrics", response_class=PlainTextResponse, dependencies=[Depends(require_scraper_or_user)])
def metrics() -> PlainTextResponse:
    """The latest k2_monitoring figures in Prometheus text format (scrape every minute)."""
    from k2.monitoring.prometheus import latest_text
    from k2.settings import load_settings

    text = latest_text(load_settings())
    if text is None:
        return PlainTextResponse(
            "# no measurement yet: the k2_monitoring DAG writes one every minute\n", status_code=503
        )
    return PlainTextResponse(text, media_type="text/plain; version=0.0.4")


metrics_app.mount("/ui", view_app)  # the K2 view (k2.airflow.ui), behind Airflow's login


class K2Plugin(AirflowPlugin):
    name = "k2"
    fastapi_apps = [{"app": metrics_app, "url_prefix": "/k2", "name": "K2 Prometheus metrics"}]
    external_views = [EXTERNAL_VIEW]
