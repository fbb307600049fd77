"""The gates' checkpoints on a real GX file project (pandas engine, no Spark): stored once and used
as stored while the rules are unchanged; edited rules are stored and apply at the next gate."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pandas as pd
import pytest

from k2 import resources
from k2.quality import gate
from k2.quality.docs import quality_root
from k2.quality.suites import load_suite
from k2.settings import Settings

LAYER, EXCHANGE = "gold_1m", "binance"
NULL_SYMBOL = {"type": "expect_column_values_to_not_be_null", "kwargs": {"column": "symbol"}}


@pytest.fixture
def settings(tmp_path: Path, monkeypatch) -> Settings:
    monkeypatch.setenv("GX_ANALYTICS_ENABLED", "false")
    project = tmp_path / "expectations"
    shutil.copytree(resources.EXPECTATIONS_DIR, project)
    return Settings.from_env({"K2_EXPECTATIONS_DIR": str(project)}, home=tmp_path / "home")


def _checkpoint(settings: Settings):
    root = quality_root(settings)
    root.mkdir(parents=True, exist_ok=True)
    suite = load_suite(settings.batch.expectations_dir, LAYER, EXCHANGE)
    prepared = gate._checkpoint(gate._runtime_context(root), suite, local=True)
    return prepared.checkpoint, prepared.stored_now, len(suite.expectations)


def _stored_suite(settings: Settings) -> Path:
    return quality_root(settings) / "gx" / "expectations" / LAYER / f"{EXCHANGE}.json"


def _failed(checkpoint, frame: pd.DataFrame) -> set[str]:
    """expectation:severity of each expectation the frame fails, as the gate reports them"""
    from great_expectations.core.run_identifier import RunIdentifier

    result = checkpoint.run(batch_parameters={"dataframe": frame}, run_id=RunIdentifier(run_name="r"))
    ((_, suite_result),) = result.run_results.items()
    findings = [gate._finding(r) for r in suite_result.results if not r.success]
    return {f"{f.expectation}:{f.severity}" for f in findings}


def test_unchanged_rules_use_the_stored_checkpoint_and_the_suite_never_grows(settings: Settings) -> None:
    first, stored_now, rules = _checkpoint(settings)
    stored = _stored_suite(settings)
    written = stored.stat().st_mtime_ns
    assert stored_now
    for _ in range(3):
        again, stored_now, _ = _checkpoint(settings)
        assert not stored_now
    assert stored.stat().st_mtime_ns == written  # not stored again
    assert len(json.loads(stored.read_text())["expectations"]) == rules  # no copy of the schema rule
    assert again.validation_definitions[0].suite.id == first.validation_definitions[0].suite.id


def test_edited_rules_are_stored_and_apply_at_the_next_gate(settings: Settings) -> None:
    checkpoint, _, rules = _checkpoint(settings)
    nameless = pd.DataFrame({"symbol": [None]})
    assert "expect_column_values_to_not_be_null(column=symbol):critical" in _failed(checkpoint, nameless)

    spec_file = settings.batch.expectations_dir / "expectations" / "gold.json"
    spec = json.loads(spec_file.read_text())
    spec["expectations"] = [{**e, "severity": "warning"} if e["kwargs"] == NULL_SYMBOL["kwargs"] and
                            e["type"] == NULL_SYMBOL["type"] else e for e in spec["expectations"]]  # fmt: skip
    spec_file.write_text(json.dumps(spec))
    edited, stored_now, _ = _checkpoint(settings)
    assert stored_now
    failed = _failed(edited, nameless)
    assert "expect_column_values_to_not_be_null(column=symbol):warning" in failed
    assert "expect_column_values_to_not_be_null(column=symbol):critical" not in failed
    assert len(json.loads(_stored_suite(settings).read_text())["expectations"]) == rules


def test_a_checkpoint_stored_otherwise_is_stored_again(settings: Settings) -> None:
    _checkpoint(settings)
    stored = quality_root(settings) / "gx" / "checkpoints" / f"{LAYER}.{EXCHANGE}.local.json"
    document = json.loads(stored.read_text())
    document["result_format"] = {"result_format": "COMPLETE"}
    stored.write_text(json.dumps(document))
    checkpoint, stored_now, _ = _checkpoint(settings)
    assert stored_now and checkpoint.result_format == gate.RESULT_FORMAT
    assert json.loads(stored.read_text())["result_format"] == gate.RESULT_FORMAT
