"""Who may read ``/k2/metrics``: a Prometheus scraper holding K2's scrape token, or a logged-in user.

The token is generated once into ``$K2_HOME/monitoring/scrape.token`` (0600) and kept across
restarts, so a scraper's ``authorization.credentials_file`` stays valid; Airflow's own JWTs
expire, which would leave a scraper blind after a day.
"""

from __future__ import annotations

import hmac
import secrets
from pathlib import Path

from k2.private import restrict_file, write_private
from k2.settings import Settings

TOKEN_FILE = "scrape.token"


def scrape_token_path(settings: Settings) -> Path:
    return settings.monitoring_dir / TOKEN_FILE


def scrape_token(settings: Settings) -> str:
    """The deployment's scrape token, created on first use."""
    path = scrape_token_path(settings)
    if not path.is_file():
        write_private(path, secrets.token_urlsafe(32))
    restrict_file(path)
    return path.read_text().strip()


def is_scraper(settings: Settings, presented: str | None) -> bool:
    return presented is not None and hmac.compare_digest(presented.encode(), scrape_token(settings).encode())
