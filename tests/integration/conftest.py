"""Fixtures shared by the integration tests (session-wide services are in tests/conftest.py)."""

from collections.abc import Iterator
from pathlib import Path

import pytest

from k2.runtime.postgres import LocalPostgres
from tests.conftest import make_settings
from tests.helpers import free_port
from tests.integration.stream_support import stream_settings  # noqa: F401  (a fixture)


@pytest.fixture
def postgres(tmp_path: Path) -> Iterator[LocalPostgres]:
    """A PostgreSQL server of the test's own (k2.runtime.postgres), its data deleted afterwards."""
    pg = LocalPostgres(make_settings(tmp_path / "pg", postgres_port=free_port()))
    pg.ensure_running()
    yield pg
    pg.reset()
