"""The operator that repairs an exchange's open gaps in the medallion DAG."""

from __future__ import annotations

import threading
from typing import Any

from airflow.sdk import BaseOperator
from airflow.sdk.exceptions import AirflowException, AirflowSkipException


class GapRepairOperator(BaseOperator):
    """Fetches the trades of every open gap of one exchange from its public REST API and publishes
    them to Kafka like the live feed (``k2.gaps.repair``); the next run's Silver takes them in and
    the gap closes. Skipped unless ``K2_GAPS_REPAIR`` is on. Logs one line per page and per gap
    (fetched, published, still missing) and returns the report. Fails when a gap's repair failed
    (a refused request, the rate-limit waiting budget used up); trades the exchange no longer has
    stay missing without failing the task. Killing the task stops it between pages and waits; what
    was published stays (a later repair skips nothing: Silver drops the duplicates)."""

    template_fields = ("exchange",)
    ui_color = "#9fc5e8"

    def __init__(self, *, exchange: str, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.exchange = exchange
        self.stop = threading.Event()

    def execute(self, context: Any) -> dict[str, Any]:
        from k2.gaps.repair import repair_gaps
        from k2.settings import load_settings

        settings = load_settings()
        if not settings.gaps_repair.enabled:
            raise AirflowSkipException("K2_GAPS_REPAIR is off: open gaps are not repaired (set it to on)")
        from k2.gaps.store import open_gaps  # gap detection's table

        gaps = open_gaps(settings, self.exchange)
        self.log.info("%d open %s gaps", len(gaps), self.exchange)
        report = repair_gaps(settings, gaps, stop=self.stop, progress=lambda line: self.log.info("%s", line))
        for result in report.gaps:
            self.log.info(
                "gap %s: missing=%d fetched=%d published=%d still_missing=%d pages=%d %s",
                result.gap.label,
                result.gap.missing_count,
                result.fetched,
                result.published,
                result.still_missing,
                result.pages,
                f"error: {result.error}" if result.error else result.ended,
            )
        failed = [r for r in report.gaps if not r.ok]
        if failed:
            raise AirflowException(f"{len(failed)} of {len(report.gaps)} {self.exchange} gap repairs failed")
        return report.to_dict()

    def on_kill(self) -> None:
        self.stop.set()  # the repair stops at its next page or wait, then flushes what it published
