"""Validations every host sees. With the catalog on PostgreSQL (the scale-out form: batch tasks on
any Celery worker, the UI on the API server's host), each gate also publishes its validation's
summary and Data Docs page to the ``quality`` scope of the document store (k2.docstore), and K2's
view lists and serves them from there. With SQLite (one host) GX's own files are the source and
nothing is copied. The page's styles and scripts are GX's static files, which the view serves
from its own host's Data Docs site (GX writes them with its first build there)."""

from __future__ import annotations

from dataclasses import asdict, astuple
from pathlib import Path

from k2.docstore import CatalogDocs, opened
from k2.lake import catalog_db
from k2.quality.docs import Validation, data_docs_dir, validation_of
from k2.settings import Settings

SCOPE = "quality"
RECENT = "recent"  # the newest validations' summaries, newest first
KEEP = 100  # summaries and pages kept; GX's own stores keep every result on the host that ran it


def applies(settings: Settings) -> bool:
    return catalog_db.applies(settings.lake)


def publish(settings: Settings, result: Path) -> Validation:
    """Publish the validation whose GX result file is ``result`` (with its page, if built)."""
    validation = validation_of(settings, result)
    docs_dir = data_docs_dir(settings)
    with opened(CatalogDocs(settings, SCOPE)) as docs:
        if validation.page is not None:
            docs.write(_page_doc(validation.page), {"html": (docs_dir / validation.page).read_text()})
        with docs.exclusive(RECENT, wait=True):
            kept = [Validation(**v) for v in (docs.read(RECENT) or {}).get("validations", [])]
            kept = [validation, *(v for v in kept if astuple(v) != astuple(validation))]
            docs.write(RECENT, {"validations": [asdict(v) for v in kept[:KEEP]]})
        for dropped in kept[KEEP:]:
            if dropped.page is not None:
                docs.delete(_page_doc(dropped.page))
    return validation


def recent(settings: Settings, limit: int) -> list[Validation]:
    with opened(CatalogDocs(settings, SCOPE)) as docs:
        return [Validation(**v) for v in (docs.read(RECENT) or {}).get("validations", [])[:limit]]


def page(settings: Settings, path: str) -> str | None:
    """A published Data Docs page (``validations/...html``), or None."""
    with opened(CatalogDocs(settings, SCOPE)) as docs:
        return (docs.read(_page_doc(path)) or {}).get("html")


def _page_doc(path: str) -> str:
    return f"page/{path}"
