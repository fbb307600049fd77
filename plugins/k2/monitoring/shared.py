"""Monitoring's shared documents (k2.docstore, scope ``monitoring``): the open incidents, the
alert outbox, the latest figures, Silver's newest accounting per exchange and the Prometheus text.
Files under ``K2_HOME/monitoring/`` on one host; rows in the catalog's database in the scale-out
form, so the monitoring task, the Silver job, `k2 status` and the UI's /metrics agree whichever
host each runs on."""

from __future__ import annotations

from k2.docstore import DocStore, doc_store
from k2.settings import Settings


def monitoring_docs(settings: Settings) -> DocStore:
    return doc_store(settings, "monitoring", settings.monitoring_dir)
