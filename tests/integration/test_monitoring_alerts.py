"""Monitoring with a real stream under load, a real Kafka broker, Iceberg tables and a webhook
receiver on loopback: pausing the stream raises exactly one warning, then exactly one critical
alert; resuming it brings exactly one resolved message."""

from __future__ import annotations

import json

import pytest

from k2.lake.catalog import load_catalog
from k2.monitoring.monitor import run_monitor
from k2.monitoring.thresholds import configured_thresholds
from k2.settings import Settings, load_settings
from k2.streams.state import StreamPaths, read_json
from k2.streams.supervisor import StreamSupervisor
from tests.fakes.webhook import WebhookReceiver
from tests.helpers import wait_for
from tests.integration.stream_support import EXCHANGE, BackgroundFeed, running_job

pytestmark = pytest.mark.integration


def test_paused_stream_warns_escalates_once_and_resolves_once(
    stream_settings: Settings, tmp_path, monkeypatch: pytest.MonkeyPatch
) -> None:
    thresholds_file = tmp_path / "thresholds.json"
    thresholds_file.write_text(json.dumps({"latency_p99_s": {"warning": 10, "critical": 20}}))
    with WebhookReceiver() as hook:
        for key, value in {
            "K2_ALERT_WEBHOOK_URL": hook.url,
            "K2_MONITOR_THRESHOLDS_FILE": str(thresholds_file),
            "K2_MONITOR_WINDOW_S": "10",
            "K2_ALERT_RESOLVE_AFTER_S": "10",
        }.items():
            monkeypatch.setenv(key, value)
        settings = load_settings()
        thresholds = configured_thresholds(settings)
        paths = StreamPaths.of(settings, EXCHANGE)
        supervisor = StreamSupervisor(settings, EXCHANGE)
        feed = None
        monitored = []

        def monitor_until(condition, timeout: float, what: str):
            def step():
                monitored.append(run_monitor(settings, thresholds).metrics[0])
                return condition()

            return wait_for(step, timeout, what, interval=1.0)

        try:
            supervisor.reconcile()  # the stream first, then the load: no backlog from a cold start
            wait_for(lambda: (read_json(paths.status) or {}).get("state") == "running", 240, "the stream to start")
            feed = BackgroundFeed(settings, rate=300)
            wait_for(lambda: running_job(paths), 120, "the stream's first batch")
            # warm: a few batches in, so a cold JVM's first slow commits are out of the 10 s window
            wait_for(lambda: (read_json(paths.progress) or {}).get("batch_id", 0) >= 8, 120, "a warm stream")
            healthy = monitor_until(
                lambda: (monitored[-1].kafka_latency_p99_s or 99) < 5 and monitored[-1].rows_committed > 0,
                60,
                "steady, measured latency",
            )
            assert healthy and hook.received == []
            m = monitored[-1]
            assert m.stream_state == "running" and m.throughput_rows_per_s > 0 and m.freshness_s < 10
            assert m.event_latency_p99_s is not None and m.event_latency_p99_s >= m.kafka_latency_p50_s - 1

            supervisor.request_stop(timeout_s=60)  # paused under load: records pile up in Kafka
            monitor_until(lambda: "critical" in hook.severities("monitor"), 120, "the critical alert")
            assert hook.severities("monitor") == ["warning", "critical"]
            assert monitored[-1].lag_messages > 0 and monitored[-1].lag_s > 20

            supervisor.clear_stop()
            supervisor.reconcile()
            resumed_at = monitored[-1].measured_at
            wait_for(lambda: running_job(paths, after=resumed_at), 240, "the resumed stream's first batch")
            monitor_until(lambda: "resolved" in hook.severities("monitor"), 180, "the resolved message")
            for _ in range(3):  # steady again: nothing more arrives
                run_monitor(settings, thresholds)
            assert hook.severities("monitor") == ["warning", "critical", "resolved"]
            assert "latency_p99_s" in hook.alerts()[0]["source"] and hook.alerts()[0]["source"].startswith(
                f"monitor {EXCHANGE}"
            )
        finally:
            if feed is not None:
                feed.stop()
            supervisor.request_stop(timeout_s=60)
            supervisor.close()

    catalog = load_catalog(settings.lake)
    events = catalog.load_table("ops.alert_events").scan().to_arrow().to_pylist()
    assert [(e["kind"], e["severity"]) for e in sorted(events, key=lambda e: e["at"])] == [
        ("opened", "warning"),
        ("escalated", "critical"),
        ("resolved", "resolved"),
    ]
    assert len({e["incident_id"] for e in events}) == 1
    history = catalog.load_table("ops.stream_metrics").scan().to_arrow()
    assert history.num_rows >= len(monitored) and max(history["lag_s"].to_pylist(), key=lambda v: v or 0) > 20
    prom = (settings.monitoring_dir / "k2.prom").read_text()
    assert f'k2_stream_latency_p99_s{{exchange="{EXCHANGE}"}}' in prom and "k2_open_incident{" not in prom
