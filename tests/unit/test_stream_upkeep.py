"""The stream's periodic metadata upkeep (k2.streams.upkeep.MetadataUpkeep): it runs when due, once
per period, and a failure is logged without stopping the stream."""

from __future__ import annotations

import pytest
from structlog.testing import capture_logs

from k2.settings import Settings
from k2.streams import upkeep as upkeep_module
from k2.streams.upkeep import MetadataUpkeep, UpkeepRun


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_upkeep_runs_once_per_period_and_logs_what_it_did(monkeypatch: pytest.MonkeyPatch) -> None:
    settings = Settings.from_env({}, bronze_expire_every_s=60, bronze_snapshot_retention_s=600)
    calls: list[str] = []

    def fake(spark, s, identifier, **_):
        calls.append(identifier)
        return UpkeepRun(
            manifests_before=61, manifests_merged=60, manifests_after=1, snapshots_expired=59, duration_s=0.2
        )

    monkeypatch.setattr(upkeep_module, "upkeep", fake)
    clock = Clock()
    housekeeping = MetadataUpkeep(None, settings, "bronze.binance_trades", clock=clock)
    housekeeping()
    assert calls == []  # not due before a period passed
    clock.now = 60.0
    with capture_logs() as logs:
        housekeeping()
        housekeeping()  # due again only a period later
    assert calls == ["bronze.binance_trades"]
    assert logs == [
        {
            "event": "bronze.upkeep",
            "log_level": "info",
            "table": "bronze.binance_trades",
            "manifests_merged": 60,
            "manifests": 1,
            "snapshots_expired": 59,
            "duration_s": 0.2,
        }
    ]


def test_a_failed_upkeep_is_logged_and_tried_again_next_period(monkeypatch: pytest.MonkeyPatch) -> None:
    settings = Settings.from_env({}, bronze_expire_every_s=60, bronze_snapshot_retention_s=600)

    def failing(*_, **__):
        raise RuntimeError("CommitFailedException: metadata location changed\n  at ...")

    monkeypatch.setattr(upkeep_module, "upkeep", failing)
    clock = Clock()
    housekeeping = MetadataUpkeep(None, settings, "bronze.binance_trades", clock=clock)
    clock.now = 61.0
    with capture_logs() as logs:
        housekeeping()  # does not raise
    assert [(e["event"], e["error"]) for e in logs] == [
        ("bronze.upkeep_failed", "CommitFailedException: metadata location changed")
    ]
    assert housekeeping.due_at == 121.0


def test_upkeep_every_0_never_runs(monkeypatch: pytest.MonkeyPatch) -> None:
    settings = Settings.from_env({}, bronze_expire_every_s=0)
    monkeypatch.setattr(upkeep_module, "upkeep", lambda *_, **__: pytest.fail("ran"))
    clock = Clock()
    housekeeping = MetadataUpkeep(None, settings, "bronze.binance_trades", clock=clock)
    clock.now = 10_000.0
    housekeeping()
