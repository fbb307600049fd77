"""The pipeline's sections: the medallion batch, table maintenance, alerts and gap repair."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from k2 import resources
from k2.errors import K2Error
from k2.settings.fields import Section, setting


@dataclass(frozen=True)
class BatchSettings(Section):
    silver_max_event_lead_s: int = setting(
        300,
        "A trade whose event time is this far after its Kafka timestamp goes to the dead letters (future_timestamp).",
        gt=0,
    )
    silver_max_event_age_s: int = setting(
        7 * 86_400,
        "A trade whose event time is this far before its Kafka timestamp goes to the dead letters (stale_timestamp).",
        gt=0,
    )
    query_tail_timeout_s: float = setting(
        30.0,
        "How long a query may take to read the Kafka tail (the records the Bronze stream has not committed).",
        key="query_tail_timeout_s",
        gt=0,
    )
    query_server: bool = setting(
        True,
        "`k2 up` starts the query server (`k2 query serve`): it judges each Kafka record once, on arrival, so "
        "queries (`k2 query trades`, bars, sql) answer from judged rows; false: every query judges the "
        "unprocessed records itself.",
        key="query_server",
    )
    query_recent_s: float = setting(
        120.0,
        "The query server keeps the trades of this many recent seconds (of Kafka time) ready in its answers' "
        "form, so a query for the last minute takes them instead of reading its store: about 160 bytes a "
        "trade, 190 MB at 10,000 trades/s; 0: answer every query from the store.",
        key="query_recent_s",
        ge=0,
    )
    settle_timeout_s: float = setting(
        1800.0,
        "How long the batch waits for Bronze to hold every record ingested in its interval before it fails "
        "(and retries).",
        key="batch_settle_timeout_s",
        gt=0,
    )
    expectations_dir: Path = setting(
        resources.EXPECTATIONS_DIR,
        "The Great Expectations project whose suites gate Bronze, Silver and Gold (results go to K2_HOME/quality); "
        "default: the one K2 ships.",
    )
    deadline_min: float = setting(
        45.0,
        "A k2_medallion run still unfinished this long after it was queued fires a deadline alert.",
        key="medallion_deadline_min",
        gt=0,
    )
    ingest_grace_s: float = setting(
        60.0,
        "A scheduled run's Bronze range is its data interval shifted this much later: a record stamped just "
        "before the hour but ingested a few seconds after it still counts in that hour's run.",
        key="batch_ingest_grace_s",
        ge=0,
        le=1800,
    )
    catch_up_max_pieces: int = setting(
        24,
        "A scheduled run also processes the Bronze ranges no earlier run covered (scheduler downtime, a paused "
        "DAG, a failed hour), oldest first, at most this many hour pieces per run; the next run goes on.",
        key="batch_catch_up_max_pieces",
        gt=0,
    )
    pass_max_rows: int = setting(
        2_000_000,
        "Adjacent pieces of a run (quiet hours of a catch-up) are processed in one Spark pass while their Bronze "
        "rows add up to at most this many: a pass has a fixed cost (about 18 s on 2 cores). 0: one pass per piece.",
        key="batch_pass_max_rows",
        ge=0,
    )
    max_manual_interval_h: float = setting(
        168.0,
        "Longest interval a manually triggered k2_medallion run (parameters start/end) may cover, in hours; a "
        "longer one is refused before any work: trigger several runs, or use an Airflow backfill.",
        key="batch_max_manual_interval_h",
        gt=0,
        le=366 * 24,
    )
    execution_timeout_min: float = setting(
        60.0,
        "A Silver or Gold task running longer than this is stopped (its Spark job interrupted) and retried.",
        key="batch_execution_timeout_min",
        gt=0,
    )
    gaps_neighbour_window_s: float = setting(
        900.0,
        "Gap detection reads Silver's trades this far before and after the interval's own (event time), so the "
        "trades just before an interval are the neighbours of its first ones; a gap whose last trade before it "
        "is older than this when the trade after it arrives is not seen.",
        key="gaps_neighbour_window_s",
        gt=0,
    )


@dataclass(frozen=True)
class MaintenanceSettings(Section):
    PREFIX = "maintenance_"
    snapshot_retention_h: float = setting(
        72.0, "Snapshots older than this are expired (time travel and rollback reach this far back).", gt=0
    )
    min_snapshots: int = setting(10, "Snapshots always kept per table, however old.", gt=0)
    orphan_age_h: float = setting(
        72.0, "Unreferenced files younger than this are never deleted (they may belong to a commit in flight).", gt=0
    )
    target_file_mb: int = setting(128, "Target data file size when compacting.", gt=0)
    deadline_min: float = setting(180.0, "Deadline of a k2_maintenance run, from when it was queued.", gt=0)
    execution_timeout_min: float = setting(
        120.0, "A maintenance task running longer than this is stopped (its Spark job interrupted) and retried.", gt=0
    )
    pool: str = setting(
        "k2_maintenance",
        "Airflow pool (one slot) of the maintenance tasks, apart from the batch's: the hourly batch never waits "
        "behind maintenance. Empty: share K2_SPARK_POOL.",
    )
    nice: int = setting(
        15,
        "Niceness added to maintenance's spark-submit (K2_SPARK_CONNECT=off; on Spark Connect maintenance runs at "
        "K2_SPARK_BATCH_NICE): compaction yields the CPU to the streams and the batch.",
        ge=0,
        le=19,
    )

    log_max_mb: int = setting(
        100, "A K2 component log (stream, feed, broker, Airflow) over this size is rotated.", gt=0
    )
    log_keep: int = setting(5, "Rotated copies kept per component log (name.log.1 is the newest).", ge=1)
    log_retention_days: float = setting(14.0, "Airflow task logs older than this are deleted.", gt=0)
    quality_retention_days: float = setting(
        30.0, "Great Expectations results and their Data Docs pages older than this are deleted.", gt=0
    )
    airflow_db_retention_days: float = setting(
        30.0, "DAG runs, task instances and logs older than this are cleaned from Airflow's metadata DB.", gt=0
    )

    def check(self) -> None:
        if self.orphan_age_h < 24:
            raise K2Error(
                f"K2_MAINTENANCE_ORPHAN_AGE_H={self.orphan_age_h:g} is under 24 hours: files "
                "that young may belong to a commit in flight",
                "use 24 or more (Iceberg refuses shorter windows for the same reason).",
            )


@dataclass(frozen=True)
class AlertSettings(Section):
    PREFIX = "alert_"
    monitor_window_s: float = setting(
        60.0, "Window over which monitoring computes latency percentiles and throughput.", key="monitor_window_s", gt=0
    )
    thresholds_file: str = setting(
        "",
        "JSON file overriding alert thresholds per metric and exchange (see `k2 thresholds`); the Airflow "
        "Variable k2_alert_thresholds overrides it in turn.",
        key="monitor_thresholds_file",
    )
    monitor_nice: int = setting(
        5,
        "Niceness the monitoring task takes on: its measurement yields the CPU to the streams.",
        key="monitor_nice",
        ge=0,
        le=19,
    )
    resolve_after_s: float = setting(
        120.0, "A metric back under its thresholds for this long resolves its incident.", gt=0
    )
    webhook_url: str = setting("", "Slack-compatible incoming webhook for alerts; empty: not used.")
    smtp_host: str = setting("", "SMTP server for alert e-mails; empty: not used.")
    smtp_port: int = setting(587, "SMTP port.", ge=1, le=65535)
    smtp_starttls: bool = setting(True, "Upgrade the SMTP connection with STARTTLS.")
    smtp_user: str = setting("", "SMTP login; empty: no authentication.")
    smtp_password: str = setting("", "SMTP password.")
    email_from: str = setting("k2@localhost", "Sender of alert e-mails.")
    email_to: tuple[str, ...] = setting((), "Recipients of alert e-mails, comma-separated.")
    delivery_attempts: int = setting(
        3, "Attempts per alert and channel before it waits in the outbox for the next monitoring run.", gt=0
    )
    retry_backoff_s: float = setting(1.0, "First delay between delivery attempts; doubles per attempt.", gt=0)

    def check(self) -> None:
        if self.smtp_host and not self.email_to:
            raise K2Error(
                "K2_ALERT_SMTP_HOST is set but K2_ALERT_EMAIL_TO is empty",
                "name the recipients of alert e-mails, comma-separated, or unset K2_ALERT_SMTP_HOST.",
            )
        if self.webhook_url and not self.webhook_url.startswith(("http://", "https://")):
            raise K2Error(
                "K2_ALERT_WEBHOOK_URL is not an http(s) URL (its value, a secret, is not shown)",
                "use the webhook URL your chat tool gave you (https://...).",
            )


@dataclass(frozen=True)
class GapRepairSettings(Section):
    """Fetching missing trades from the exchanges' REST APIs (``k2 gaps repair``)."""

    PREFIX = "gaps_repair_"
    enabled: bool = setting(
        False,
        "The k2_medallion DAG's repair_gaps task fetches every open gap's trades from the exchange's REST API "
        "and publishes them to Kafka (on/off; off: the task is skipped). `k2 gaps repair` works either way.",
        key="gaps_repair",
    )
    max_trades: int = setting(
        100_000,
        "Most trades fetched for one gap in one repair; the rest stays missing (a narrower gap) for the next.",
        gt=0,
    )
    max_wait_s: float = setting(
        120.0,
        "Longest Retry-After (HTTP 429 or 418) a repair honours; an exchange asking for more fails the gap.",
        gt=0,
    )
    wait_budget_s: float = setting(
        600.0,
        "Time one repair may spend waiting on rate limits and retries per exchange; past it the remaining "
        "gaps fail with that cause.",
        gt=0,
    )
    retries: int = setting(
        5, "Retries of a request that failed with HTTP 5xx or a network error, with exponential backoff.", ge=0
    )
    request_timeout_s: float = setting(15.0, "Timeout of one REST request.", gt=0)
    execution_timeout_min: float = setting(
        60.0, "A repair_gaps task running longer than this is stopped (what it published stays) and retried.", gt=0
    )

    def check(self) -> None:
        if self.max_wait_s > self.wait_budget_s:
            raise K2Error(
                f"K2_GAPS_REPAIR_MAX_WAIT_S={self.max_wait_s:g} is longer than "
                f"K2_GAPS_REPAIR_WAIT_BUDGET_S={self.wait_budget_s:g}: no such wait could be honoured",
                "keep the longest honoured Retry-After within the waiting budget.",
            )
