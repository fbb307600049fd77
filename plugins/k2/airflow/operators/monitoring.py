"""Operator of the monitoring DAG."""

from __future__ import annotations

import os
from typing import Any

from airflow.sdk import BaseOperator
from airflow.sdk.exceptions import AirflowException


class StreamMonitorOperator(BaseOperator):
    """Measures every Bronze stream (latency, lag, freshness, throughput, restarts, dead-letter
    ratio), appends the figures to ``ops.stream_metrics``, refreshes the Prometheus textfile, and
    opens, escalates or resolves incidents against the thresholds, alerting once per change.

    Thresholds: the defaults, ``K2_MONITOR_THRESHOLDS_FILE``, then the Airflow Variable
    ``k2_alert_thresholds``; an invalid one fails the task with the offending key named.
    """

    ui_color = "#e8c468"

    def execute(self, context: Any) -> dict[str, Any]:
        from airflow.sdk import Variable

        from k2.monitoring.monitor import run_monitor
        from k2.monitoring.thresholds import VARIABLE_KEY, configured_thresholds
        from k2.settings import load_settings

        settings = load_settings()
        os.nice(settings.alerts.monitor_nice)  # this task process only: the streams keep the CPU first
        result = run_monitor(settings, configured_thresholds(settings, Variable.get(VARIABLE_KEY, default=None)))
        for m in result.metrics:
            self.log.info(
                "stream=%s state=%s p99=%ss (kafka %ss, event %ss) lag=%s msgs / %ss freshness=%ss "
                "throughput=%s rows/s restarts_1h=%s dead_letter_ratio=%s",
                m.exchange,
                m.stream_state,
                m.latency_p99_s,
                m.kafka_latency_p99_s,
                m.event_latency_p99_s,
                m.lag_messages,
                m.lag_s,
                m.freshness_s,
                m.throughput_rows_per_s,
                m.restarts_1h,
                m.dead_letter_ratio,
            )
        for alert in result.alerts:
            self.log.warning("ALERT %s (delivery: %s)", alert.text, alert.delivery or "log only")
        self.log.info("open incidents: %d", result.open_incidents)
        if result.failures:  # red in the UI: monitoring that cannot measure must not look healthy
            failed = "; ".join(f"{exchange}: {why}" for exchange, why in result.failures.items())
            raise AirflowException(f"could not measure {failed}")
        return {
            "open_incidents": result.open_incidents,
            "events": len(result.events),
            "streams": {m.exchange: m.stream_state for m in result.metrics},
        }
