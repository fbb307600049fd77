"""Fixtures shared by the integration tests (session-wide services are in tests/conftest.py)."""

from tests.integration.stream_support import stream_settings  # noqa: F401  (a fixture)
