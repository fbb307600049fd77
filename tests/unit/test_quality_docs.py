"""The gates' Data Docs on a real GX file project (pandas engine, no Spark): each validation gets its
page at once, while the index, whose rebuild grows with every stored result, is rebuilt only when
missing or older than DOCS_INDEX_REFRESH_S."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pandas as pd

from k2.quality import gate
from k2.quality.docs import DOCS_INDEX_REFRESH_S, data_docs_dir, quality_root, recent_validations
from k2.quality.suites import load_suite
from k2.settings import Settings


def _validate(settings: Settings, run_name: str) -> str:
    from great_expectations.core.run_identifier import RunIdentifier

    root = quality_root(settings)
    root.mkdir(parents=True, exist_ok=True)
    context = gate._runtime_context(root)
    prepared = gate._checkpoint(context, load_suite(settings.batch.expectations_dir, "gold_1m", "binance"), local=True)
    result = prepared.checkpoint.run(batch_parameters={"dataframe": pd.DataFrame({"symbol": ["BTC-USDT"]})},
                            run_id=RunIdentifier(run_name=run_name))  # fmt: skip
    ((result_id, _),) = result.run_results.items()
    return gate._build_docs(context, result_id, root, suite_changed=prepared.stored_now)


def test_each_validation_gets_its_page_and_the_index_is_rebuilt_only_when_stale(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("GX_ANALYTICS_ENABLED", "false")
    settings = Settings.from_env({}, home=tmp_path)
    index = data_docs_dir(settings) / "index.html"

    first = _validate(settings, "r1")
    assert first.startswith("file://") and Path(first.removeprefix("file://")).is_file()
    suite_page = data_docs_dir(settings) / "expectations" / "gold_1m" / "binance.html"
    assert suite_page.is_file()  # the validation page links to it
    assert index.is_file() and "r1" in index.read_text()  # missing: built with the first page

    second = _validate(settings, "r2")
    assert Path(second.removeprefix("file://")).is_file()
    assert "r2" not in index.read_text()  # fresh: left alone
    assert [v.run_name for v in recent_validations(settings)] == ["r2", "r1"]  # K2's view has both at once

    stale = time.time() - DOCS_INDEX_REFRESH_S - 60
    os.utime(index, (stale, stale))
    _validate(settings, "r3")
    assert all(run in index.read_text() for run in ("r1", "r2", "r3"))  # stale: rebuilt with every result


def test_the_suite_page_is_rebuilt_only_when_the_suite_was_stored_or_has_none(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("GX_ANALYTICS_ENABLED", "false")
    settings = Settings.from_env({}, home=tmp_path)
    suite_page = data_docs_dir(settings) / "expectations" / "gold_1m" / "binance.html"
    _validate(settings, "r1")
    built = suite_page.stat().st_mtime_ns
    second = _validate(settings, "r2")
    assert Path(second.removeprefix("file://")).is_file()  # the validation's own page, always
    assert suite_page.stat().st_mtime_ns == built  # same rules: the suite's page as it was
    suite_page.unlink()
    _validate(settings, "r3")
    assert suite_page.is_file()  # missing: built again
