"""The K2 view's routes, behind Airflow's own authentication: the user comes from Airflow's
``get_user`` (the UI's ``_token`` cookie or an ``Authorization: Bearer`` JWT, as on Airflow's API),
and the auth manager decides who may see the view (``is_authorized_custom_view``). Imported only by
the API server (see ``k2.airflow.ui``)."""

from __future__ import annotations

from airflow.api_fastapi.app import get_auth_manager
from airflow.api_fastapi.core_api.security import GetUserDep
from fastapi import Depends, FastAPI, HTTPException, Query, Request, status
from fastapi.exception_handlers import http_exception_handler
from fastapi.responses import FileResponse, HTMLResponse, RedirectResponse, Response
from starlette.exceptions import HTTPException as StarletteHTTPException

from k2.airflow.ui.data import collect
from k2.airflow.ui.page import render
from k2.quality import shared
from k2.quality.docs import data_docs_dir, data_docs_file
from k2.settings import load_settings

RESOURCE = "K2"  # the custom view's name, as auth managers see it
# Data Docs are static HTML, but load GX's scripts from public CDNs: none runs in Airflow's origin
# (where it could act as the user). Their own links and styles (same origin) still work.
DOCS_HEADERS = {
    "Content-Security-Policy": (
        "script-src 'none'; object-src 'none'; connect-src 'none'; base-uri 'none'; frame-ancestors 'self'"
    ),
    "X-Content-Type-Options": "nosniff",
}
PAGE_HEADERS = {
    "Cache-Control": "no-store",
    "Content-Security-Policy": "default-src 'none'; style-src 'unsafe-inline'; frame-ancestors 'self'",
}


def require_view(user: GetUserDep) -> None:
    if not get_auth_manager().is_authorized_custom_view(method="GET", resource_name=RESOURCE, user=user):
        raise HTTPException(status.HTTP_403_FORBIDDEN, "Forbidden")


app = FastAPI(title="K2 view", docs_url=None, redoc_url=None, openapi_url=None, dependencies=[Depends(require_view)])


@app.exception_handler(StarletteHTTPException)
async def login_first(request: Request, exc: StarletteHTTPException) -> Response:
    """A browser without a valid login goes to Airflow's login page, and back here after it."""
    if exc.status_code == status.HTTP_401_UNAUTHORIZED and "text/html" in request.headers.get("accept", ""):
        here = request.url.path + (f"?{request.url.query}" if request.url.query else "")
        return RedirectResponse(get_auth_manager().get_url_login(next_url=here), status.HTTP_303_SEE_OTHER)
    return await http_exception_handler(request, exc)


@app.get("/", response_class=HTMLResponse)
def view(request: Request, hours: float = Query(1.0, gt=0, le=168)) -> HTMLResponse:
    base = request.scope.get("root_path", "").rstrip("/")
    return HTMLResponse(render(collect(load_settings(), hours), base), headers=PAGE_HEADERS)


@app.get("/docs/{path:path}")
def data_docs(path: str) -> Response:
    """A file of the Data Docs site (pages, their styles and images); nothing outside it. A page
    a gate on another host published (k2.quality.shared) comes from the document store."""
    settings = load_settings()
    target = data_docs_file(data_docs_dir(settings), path)
    if target is not None:
        return FileResponse(target, headers=DOCS_HEADERS)
    html = shared.page(settings, path) if shared.applies(settings) else None
    if html is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, "no such Data Docs file")
    return HTMLResponse(html, headers=DOCS_HEADERS)
