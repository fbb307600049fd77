"""``k2 status``'s rows built from what monitoring recorded (no service runs)."""

from __future__ import annotations

import time
from pathlib import Path

from k2.settings import Settings


def test_silver_reconciliation_says_how_old_its_figures_are(tmp_path: Path) -> None:
    """The figures are the last monitoring run's: right after a batch they can still show it waiting
    (`k2 up` printed Kraken's Silver as "accounted 0" after its first batch had processed it)."""
    from k2.docstore import opened
    from k2.monitoring.shared import monitoring_docs
    from k2.status import reconciliation_rows

    settings = Settings.from_env({}, home=tmp_path, exchanges=("binance", "kraken"))
    figures = {"kafka_committed": 100, "bronze_rows": 100, "silver_accounted_rows": 60, "unprocessed_rows": 40}
    binance = {"exchange": "binance", "measured_at": time.time() - 42, "unprocessed_age_s": 120, **figures}
    with opened(monitoring_docs(settings)) as docs:
        docs.write("latest", {"metrics": [binance], "incidents": []})

    rows = {row[0]: row for row in reconciliation_rows(settings)}
    state, where, details = rows["silver binance"][1:]
    assert (state, where) == ("reconciled", "ops.medallion_ledger")
    assert details.startswith("Kafka 100 = Bronze 100 = Silver accounted 60 + waiting 40 (oldest 2 min), measured ")
    assert 42 <= int(details.split("measured ")[1].removesuffix("s ago")) <= 60
    assert rows["silver kraken"][1:] == ("not reconciled yet", "ops.medallion_ledger", "k2_monitoring measures it")
