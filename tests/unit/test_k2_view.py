"""The K2 view's pure parts: the page's HTML, the Data Docs listing and the file guard."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from k2.airflow.ui import EXTERNAL_VIEW
from k2.airflow.ui.data import ViewData
from k2.airflow.ui.page import render
from k2.monitoring.incidents import Incident
from k2.monitoring.report import NO_MEASUREMENT, STREAM_HEADERS
from k2.quality.docs import Validation, data_docs_dir, data_docs_file, recent_validations, results_dir
from k2.settings import Settings

ROOT = Path(__file__).resolve().parents[2]
NOW = 1_790_000_000.0


def view(**changes) -> ViewData:
    values = dict(
        generated_at=NOW,
        hours=1.0,
        stream_headers=STREAM_HEADERS,
        streams=[("binance", "running", "1.5 / 2.5", "10", "0.5", "2.0", "10.0", "0", "none", "5s ago")],
        incidents=[Incident("abc", "binance", "latency_p99_s", "critical", NOW - 600, 42.0, 30.0)],
        reconciliation=[("silver binance", "reconciled", "ops.medallion_ledger", "Kafka 5 = Bronze 5")],
        charts=["<h2>lag (s)</h2><svg></svg>"],
        chart_points=6,
        validations=[
            Validation("gold_1m.binance", "h11", "2026-11-30T11:05:00+00:00", False, 29, 7, "validations/a b.html"),
            Validation("silver.binance", "h10", "20261130T100500.000001Z", True, 12, 0, None),
        ],
    )
    values.update(changes)
    return ViewData(**values)


def test_the_page_shows_every_section() -> None:
    html = render(view(), "/k2/ui")
    assert "<td>binance</td><td>running</td>" in html
    assert "<td class='critical'>critical</td><td>42</td><td>30</td>" in html and "(10 min ago)" in html
    assert "Kafka -&gt; Iceberg commit p99" in html  # what the metric means
    assert "Kafka 5 = Bronze 5" in html and "<svg></svg>" in html and "6 measurements" in html
    assert "<b>1 h</b>" in html and "href='/k2/ui/?hours=6'" in html
    assert "FAILED</span> (7 of 29 expectations)" in html and "passed</span> (12 expectations)" in html
    assert "href='/k2/ui/docs/validations/a%20b.html'>Data Docs</a>" in html
    assert "2026-11-30 11:05:00 UTC" in html and "2026-11-30 10:05:00 UTC" in html
    assert "not built" in html  # the second run has no page
    assert "<script" not in html


def test_values_are_escaped() -> None:
    evil = "<script>alert(1)</script>"
    html = render(
        view(
            streams=[(evil, *["x"] * 9)],
            incidents=[Incident("i", evil, evil, "warning", NOW, 1.0, 0.5)],
            validations=[Validation(evil, evil, evil, True, 1, 0, f"validations/{evil}.html")],
        ),
        "/k2/ui",
    )
    assert "<script" not in html and "&lt;script&gt;" in html


def test_empty_sections_say_why() -> None:
    html = render(view(streams=[], incidents=[], validations=[], charts=[], chart_error="history unreadable"), "/k")
    assert NO_MEASUREMENT in html
    assert "none: every measured figure is under its thresholds" in html
    assert "no quality run yet" in html and "history unreadable" in html


def test_data_docs_file_stays_inside_the_site(tmp_path: Path) -> None:
    site = tmp_path / "site"
    (site / "validations").mkdir(parents=True)
    page = site / "validations" / "run.html"
    page.write_text("ok")
    (tmp_path / "secret.json").write_text("{}")
    (site / "link.json").symlink_to(tmp_path / "secret.json")
    assert data_docs_file(site, "validations/run.html") == page.resolve()
    assert data_docs_file(site, "validations/../validations/run.html") == page.resolve()
    for outside in ("../secret.json", "validations/../../secret.json", str(tmp_path / "secret.json"), "link.json"):
        assert data_docs_file(site, outside) is None, outside
    assert data_docs_file(site, "validations") is None  # a directory
    assert data_docs_file(site, "missing.html") is None
    assert data_docs_file(site, "a\x00b") is None


def write_result(settings: Settings, suite: str, run: str, at: str, success: bool | str, page: bool = True) -> None:
    relative = Path(*suite.split("."), run, at, "k2_local-batch.json")
    path = results_dir(settings) / relative
    path.parent.mkdir(parents=True)
    if isinstance(success, str):
        path.write_text(success)
    else:
        stats = {"evaluated_expectations": 10, "unsuccessful_expectations": 0 if success else 3}
        meta = {"run_id": {"run_name": run, "run_time": f"iso {at}"}}
        path.write_text(json.dumps({"suite_name": suite, "success": success, "statistics": stats, "meta": meta}))
    if page:
        html = data_docs_dir(settings) / "validations" / relative.with_suffix(".html")
        html.parent.mkdir(parents=True)
        html.write_text("<html></html>")


def test_recent_validations_newest_first(tmp_path: Path) -> None:
    settings = Settings.from_env({}, home=tmp_path)
    assert recent_validations(settings) == []
    write_result(settings, "gold_1m.binance", "h11", "20261130T110000.000000Z", False, page=False)
    write_result(settings, "silver.kraken", "h12", "20261130T120000.000000Z", "{torn")
    write_result(settings, "silver.binance", "h10", "20261130T100000.000000Z", True)
    found = recent_validations(settings)
    assert [(v.suite, v.run_name, v.passed, v.failed) for v in found] == [
        ("silver.kraken", "h12", None, None),  # unreadable: named from its path
        ("gold_1m.binance", "h11", False, 3),
        ("silver.binance", "h10", True, 0),
    ]
    assert found[1].page is None and found[1].validated_at == "iso 20261130T110000.000000Z"
    assert found[2].page == "validations/silver/binance/h10/20261130T100000.000000Z/k2_local-batch.html"
    assert len(recent_validations(settings, limit=1)) == 1


def test_the_plugin_stays_light_and_registers_the_view(tmp_path: Path) -> None:
    """Airflow imports plugins in every process: the view's app (Airflow's API security, K2's
    readers) loads on its first request only."""
    code = (
        "import json, sys; import k2.airflow.plugin as p; "
        "print(json.dumps([sorted(m for m in sys.modules if m.split('.')[0] in HEAVY or m in LAZY), "
        "p.K2Plugin.external_views, [r.path for r in p.metrics_app.routes]]))"
    )
    heavy = ("pyspark", "great_expectations", "confluent_kafka", "pyiceberg")
    lazy = ("k2.airflow.ui.app", "airflow.api_fastapi.core_api.security")
    result = subprocess.run(
        [sys.executable, "-c", f"HEAVY = {heavy!r}; LAZY = {lazy!r}; {code}"],
        cwd=ROOT,
        env={**{k: v for k, v in os.environ.items() if not k.startswith("AIRFLOW")}, "AIRFLOW_HOME": str(tmp_path)},
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    loaded, views, routes = json.loads(result.stdout.strip().splitlines()[-1])
    assert loaded == []
    assert views == [EXTERNAL_VIEW] and EXTERNAL_VIEW["href"] == "/k2/ui/" and "/ui" in routes
