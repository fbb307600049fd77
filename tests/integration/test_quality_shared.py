"""Validations every host sees (k2.quality.shared): with the catalog on PostgreSQL, what a gate on
one Celery worker's host validated is listed, and its Data Docs page served, by K2's view on the API
server's host, which has none of the worker's files."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from k2.quality import shared
from k2.quality.docs import data_docs_dir, recent_validations, results_dir
from k2.runtime.postgres import LocalPostgres
from tests.conftest import make_settings

pytestmark = pytest.mark.integration


def _validated(settings, run_time: str, passed: bool) -> Path:
    """A GX result file and its Data Docs page, where a gate on ``settings``' host leaves them."""
    relative = Path("silver", "binance", "binance_2026-12-02T03:00..2026-12-02T04:00", run_time)
    result = results_dir(settings) / relative / "k2_local-silver.binance.json"
    result.parent.mkdir(parents=True, exist_ok=True)
    stats = {"evaluated_expectations": 12, "unsuccessful_expectations": 0 if passed else 1}
    run = {"run_name": "binance_2026-12-02T03:00..2026-12-02T04:00", "run_time": run_time}
    result.write_text(
        json.dumps({"success": passed, "statistics": stats, "suite_name": "silver.binance", "meta": {"run_id": run}})
    )
    page = data_docs_dir(settings) / "validations" / relative / "k2_local-silver.binance.html"
    page.parent.mkdir(parents=True, exist_ok=True)
    page.write_text(f"<html><body>silver.binance at {run_time}: {'passed' if passed else 'failed'}</body></html>")
    return result


def test_a_validation_on_one_host_is_listed_and_its_page_served_on_another(
    postgres: LocalPostgres, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    worker = make_settings(tmp_path / "worker", catalog_uri=postgres.uri("catalog"))
    api_host = make_settings(tmp_path / "api", catalog_uri=postgres.uri("catalog"))
    first = shared.publish(worker, _validated(worker, "20261202T040800.000001Z", passed=False))
    shared.publish(worker, _validated(worker, "20261202T040800.000001Z", passed=False))  # again: listed once

    seen = recent_validations(api_host)
    assert [(v.suite, v.passed, v.evaluated, v.failed) for v in seen] == [("silver.binance", False, 12, 1)]
    assert seen[0].page == first.page and "failed" in shared.page(api_host, first.page)
    assert not results_dir(api_host).exists() and shared.page(api_host, "validations/none.html") is None

    monkeypatch.setattr(shared, "KEEP", 2)  # the oldest summary and its page go once more are kept
    second = shared.publish(worker, _validated(worker, "20261202T050800.000001Z", passed=True))
    third = shared.publish(worker, _validated(worker, "20261202T060800.000001Z", passed=True))
    assert [v.validated_at for v in recent_validations(api_host)] == [third.validated_at, second.validated_at]
    assert shared.page(api_host, first.page) is None and "passed" in shared.page(api_host, third.page)
