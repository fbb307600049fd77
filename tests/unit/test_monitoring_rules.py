"""Thresholds validation and the incident state machine (pure logic)."""

from __future__ import annotations

import json

import pytest

from k2.docstore import FileDocs
from k2.errors import K2Error
from k2.monitoring.incidents import IncidentBook, IncidentStore
from k2.monitoring.thresholds import load_thresholds

EXCHANGES = ["binance", "kraken"]


def test_defaults_are_the_seeds_latency_thresholds() -> None:
    t = load_thresholds(EXCHANGES).of("binance", "latency_p99_s")
    assert (t.warning, t.critical) == (10.0, 30.0)
    assert [t.level(v) for v in (None, 9.9, 10.0, 10.1, 30.1)] == [None, None, None, "warning", "critical"]


def test_overrides_apply_in_order_and_per_exchange() -> None:
    file = json.dumps({"latency_p99_s": {"warning": 5}, "exchanges": {"kraken": {"latency_p99_s": {"critical": 60}}}})
    t = load_thresholds(EXCHANGES, ("file", file), ("variable", {"freshness_s": {"critical": None}}))
    assert (t.of("binance", "latency_p99_s").warning, t.of("binance", "latency_p99_s").critical) == (5.0, 30.0)
    assert (t.of("kraken", "latency_p99_s").warning, t.of("kraken", "latency_p99_s").critical) == (5.0, 60.0)
    assert t.of("kraken", "freshness_s").critical is None and t.of("kraken", "freshness_s").level(10**6) == "warning"


@pytest.mark.parametrize(
    ("raw", "named"),
    [
        ('{"latency_p99": {"warning": 1}}', "unknown key latency_p99"),
        ('{"latency_p99_s": {"warn": 1}}', "unknown key latency_p99_s.warn"),
        ('{"latency_p99_s": {"warning": -1}}', "latency_p99_s.warning is -1"),
        ('{"latency_p99_s": {"warning": "ten"}}', "latency_p99_s.warning is 'ten', not a number"),
        ('{"latency_p99_s": {"warning": true}}', "latency_p99_s.warning is True, not a number"),
        ('{"exchanges": {"kraken": {"lag_s": {"warning": 1}}}}', "unknown key exchanges.kraken.lag_s"),
        ('{"exchanges": {"coinbase": {}}}', "exchanges.coinbase is not a configured exchange"),
        ('{"latency_p99_s": {"warning": 40}}', "warning 40 is above critical 30"),
        ("[1]", "must hold a JSON object"),
        ("{nope", "is not valid JSON"),
    ],
)
def test_bad_thresholds_are_rejected_naming_the_key(raw: str, named: str) -> None:
    with pytest.raises(K2Error, match=named.replace("(", r"\(").replace(")", r"\)")):
        load_thresholds(EXCHANGES, ("Airflow Variable k2_alert_thresholds", raw))


def test_one_alert_per_incident_escalation_then_resolution_after_quiet_period() -> None:
    t = load_thresholds(EXCHANGES)
    book = IncidentBook()
    kinds = []
    for now, value in [
        (0, 1),
        (60, 12),
        (120, 15),
        (180, 31),
        (240, 45),
        (300, 20),
        (360, 2),
        (420, 12),
        (480, 2),
        (540, 2),
        (600, 2),
        (660, 2),
    ]:
        kinds += [
            (now, e.kind, e.severity)
            for e in book.evaluate("binance", {"latency_p99_s": value}, t, float(now), resolve_after_s=120)
        ]
    # 20 after critical does not de-escalate; the 420 blip restarts the quiet period
    assert kinds == [(60, "opened", "warning"), (180, "escalated", "critical"), (600, "resolved", "resolved")]
    assert book.open == {}


def test_unknown_value_neither_opens_nor_resolves() -> None:
    t = load_thresholds(EXCHANGES)
    book = IncidentBook()
    assert book.evaluate("kraken", {"lag_messages": None}, t, 0.0, 60) == []
    book.evaluate("kraken", {"lag_messages": 300_000}, t, 1.0, 60)
    assert book.evaluate("kraken", {"lag_messages": None}, t, 500.0, 60) == []
    assert [i.metric for i in book.of_exchange("kraken")] == ["lag_messages"]


def test_incidents_survive_a_restart(tmp_path) -> None:
    t = load_thresholds(EXCHANGES)
    store = IncidentStore(FileDocs(tmp_path))
    with store.transaction() as book:
        assert [e.kind for e in book.evaluate("binance", {"latency_p99_s": 50}, t, 0.0, 60)] == ["opened"]
    with store.transaction() as book:  # a new process: same incident, no new alert
        assert book.evaluate("binance", {"latency_p99_s": 50}, t, 60.0, 60) == []
        assert book.of_exchange("binance")[0].severity == "critical"


@pytest.mark.parametrize(
    ("committed_p99", "waiting", "waiting_age", "alerting"),
    [
        (None, 0, 0.0, None),  # an idle minute: no row committed, none waiting -> no data, not 0 s
        (None, None, None, None),  # Kafka not reachable either
        (2.5, 0, 0.0, 2.5),
        (2.5, 40, 0.8, 2.5),
        (None, 1200, 45.0, 45.0),  # stopped committing: the waiting records' age is the latency
        (3.0, 1200, 45.0, 45.0),
    ],
)
def test_alerting_latency_is_none_without_data(committed_p99, waiting, waiting_age, alerting) -> None:
    from k2.monitoring.metrics import alerting_latency

    assert alerting_latency(committed_p99, waiting, waiting_age) == alerting


def test_idle_minutes_neither_open_nor_resolve_a_latency_incident() -> None:
    from k2.monitoring.metrics import alerting_latency

    t = load_thresholds(EXCHANGES)
    book = IncidentBook()
    assert [e.kind for e in book.evaluate("kraken", {"latency_p99_s": 45.0}, t, 0.0, 120)] == ["opened"]
    idle = alerting_latency(None, 0, 0.0)
    for minute in range(1, 11):  # ten idle minutes: a 0.0 here would have resolved it after two
        assert book.evaluate("kraken", {"latency_p99_s": idle}, t, minute * 60.0, 120) == []
    assert [i.metric for i in book.of_exchange("kraken")] == ["latency_p99_s"]
    resolved = [book.evaluate("kraken", {"latency_p99_s": 1.5}, t, now, 120) for now in (700.0, 820.0)]
    assert [e.kind for events in resolved for e in events] == ["resolved"]


def test_a_measurement_without_rows_or_waiting_records_has_no_latency(tmp_path, monkeypatch) -> None:
    from types import SimpleNamespace

    from k2.monitoring import metrics
    from k2.settings import Settings

    class Supervisor:
        def __init__(self, *_args) -> None:
            pass

        def inspect(self, known_lag):
            return SimpleNamespace(state="running", restarts_last_hour=0)

        def close(self) -> None:
            pass

    monkeypatch.setattr("k2.streams.supervisor.StreamSupervisor", Supervisor)
    monkeypatch.setattr(metrics, "kafka_lag", lambda *_args: (0, 0.0))  # nothing waits in Kafka
    monkeypatch.setattr(metrics, "_from_bronze", lambda *_args: None)  # no commit in the window
    monkeypatch.setattr(metrics, "_reconcile", lambda *_args: None)
    m = metrics.measure(Settings.from_env({}, home=tmp_path), "binance", now=1_000.0)
    assert (m.lag_s, m.kafka_latency_p99_s, m.latency_p99_s) == (0.0, None, None)
    assert m.alerting_values()["latency_p99_s"] is None
