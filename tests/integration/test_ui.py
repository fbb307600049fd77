"""The K2 view in the Airflow UI as a user meets it: Airflow started by K2 (API server, scheduler,
DAG processor, triggerer), figures written by the real monitoring run and quality gate, and the
system's headless Chromium logging in through Airflow's own login page. Without a login the view
serves nothing."""

from __future__ import annotations

import http.client
import json
import re
import time
import urllib.parse
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pyarrow as pa
import pytest

from k2.lake.catalog import load_catalog
from k2.lake.tables import all_tables, ensure_tables
from k2.monitoring.metrics import StreamMetrics
from k2.monitoring.monitor import run_monitor
from k2.monitoring.report import COLOURS
from k2.monitoring.thresholds import configured_thresholds
from k2.quality.docs import data_docs_dir
from k2.runtime.airflow import AirflowServices
from k2.settings import Settings
from tests.helpers import free_port
from tests.integration.stream_support import EXCHANGE, isolated_installation
from tests.spark.test_quality_local import BAD_BARS, SCHEMA, bar

pytestmark = pytest.mark.integration

CHROMIUM = "/usr/bin/chromium"  # installed by `k2 system-packages`; Playwright downloads no browser here
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
VIEW = "/k2/ui/"
CRITICAL_LATENCY_S = 42.0  # over the default critical threshold (30 s)


def arrow_rows(rows: list[tuple]) -> pa.Table:
    """Bars as the Gold task hands them to the quality gate: Arrow rows held in the driver."""
    names = [column.split()[0] for column in SCHEMA.split(", ")]
    return pa.Table.from_pylist([dict(zip(names, row, strict=True)) for row in rows])


@pytest.fixture
def installation(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Settings:
    """A K2 installation with a monitoring history, an open incident, reconciliation figures and
    two quality runs (one failed). No broker: the view reads files and Iceberg metadata only."""
    settings = isolated_installation(tmp_path / "home", free_port(), free_port(), monkeypatch)
    ensure_tables(load_catalog(settings.lake), all_tables(settings))
    now = time.time()
    for n, ago in enumerate((50, 40, 30, 20, 10, 0)):  # k2_monitoring's runs over the last hour

        def measured(_settings: Settings, exchange: str, at: float, n: int = n) -> StreamMetrics:
            return StreamMetrics(
                exchange,
                at,
                "running",
                60.0,
                rows_committed=600,
                kafka_latency_p99_s=1.5 + n,
                event_latency_p99_s=2.5 + n,
                latency_p99_s=CRITICAL_LATENCY_S if n == 5 else 1.5 + n,
                lag_messages=100 * n,
                lag_s=0.5 * n,
                freshness_s=2.0,
                throughput_rows_per_s=10.0,
                restarts_1h=0,
                dead_letter_ratio=0.0,
                kafka_committed=1234,
                bronze_rows=1234,
                silver_accounted_rows=1200,
                unprocessed_rows=34,
                unprocessed_age_s=300.0,
                bronze_gap_rows=0,
                silver_gap_rows=0,
            )

        monkeypatch.setattr("k2.monitoring.monitor.measure", measured)  # Kafka and the stream, as measured
        result = run_monitor(settings, configured_thresholds(settings), now=now - ago * 60)
    assert result.open_incidents == 1 and result.events[0].severity == "critical"

    from k2.quality import validate

    for hour, rows in ((10, [bar(m) for m in range(5)]), (11, BAD_BARS)):
        validate("gold_1m", arrow_rows(rows), settings=settings, exchange=EXCHANGE, run_name=f"run_h{hour}")
    return settings


@pytest.fixture
def airflow(installation: Settings) -> Iterator[AirflowServices]:
    services = AirflowServices(installation)
    services.start()
    try:
        yield services
    finally:
        services.stop()


def request(url: str, headers: dict[str, str] | None = None) -> tuple[int, dict[str, str], str]:
    """Status, headers and body of a GET, redirects not followed."""
    parts = urllib.parse.urlsplit(url)
    connection = http.client.HTTPConnection(parts.hostname, parts.port, timeout=60)
    try:
        connection.request("GET", parts.path + (f"?{parts.query}" if parts.query else ""), headers=headers or {})
        response = connection.getresponse()
        return response.status, dict(response.getheaders()), response.read().decode(errors="replace")
    finally:
        connection.close()


def api_token(airflow: AirflowServices) -> str:
    body = json.dumps({"username": airflow.settings.airflow.admin_user, "password": airflow.password()}).encode()
    post = urllib.request.Request(
        f"{airflow.url}/auth/token", data=body, headers={"Content-Type": "application/json"}, method="POST"
    )
    with urllib.request.urlopen(post, timeout=30) as response:
        return json.loads(response.read())["access_token"]


def colour_pixels(png: Path, hex_colour: str, tolerance: int = 40) -> int:
    from PIL import Image

    target = tuple(int(hex_colour[i : i + 2], 16) for i in (1, 3, 5))
    with Image.open(png) as image:
        pixels = image.convert("RGB").getdata()
        return sum(1 for p in pixels if sum(abs(a - b) for a, b in zip(p, target, strict=True)) <= tolerance)


@pytest.mark.timeout(600)
def test_k2_view_in_the_airflow_ui(airflow: AirflowServices, tmp_path: Path) -> None:
    from playwright.sync_api import expect, sync_playwright

    url = airflow.url
    password = airflow.password()
    assert password

    # no login: refused and nothing served, whatever the route or credential
    for path in (VIEW, f"{VIEW}?hours=6", f"{VIEW}docs/index.html"):
        code, _, body = request(f"{url}{path}")
        assert code == 401, (path, code, body[:300])
        assert EXCHANGE not in body and "gold_1m" not in body
    code, _, body = request(f"{url}{VIEW}", {"Cookie": "_token=forged.jwt.value"})
    assert code in (401, 403) and EXCHANGE not in body
    code, headers, body = request(f"{url}{VIEW}", {"Accept": "text/html"})  # a browser: sent to Airflow's login
    assert code == 303 and headers["location"].startswith("/auth/login?next=%2Fk2%2Fui%2F"), (code, headers)
    assert EXCHANGE not in body

    # an API client with Airflow's JWT; the Data Docs route serves nothing outside the docs
    bearer = {"Authorization": f"Bearer {api_token(airflow)}"}
    code, headers, body = request(f"{url}{VIEW}", bearer)
    assert code == 200 and "Open incidents" in body and headers["cache-control"] == "no-store"
    assert password not in body
    pages = re.findall(r"href='(/k2/ui/docs/validations/[^']+[.]html)'", body)
    assert len(pages) == 2  # one per quality run
    code, headers, body = request(f"{url}{pages[0]}", bearer)
    assert code == 200 and "run_h11" in body and "script-src 'none'" in headers["content-security-policy"]
    up = "../../../../../airflow/passwords.json"  # from the Data Docs directory to the admin's password
    assert (data_docs_dir(airflow.settings) / up).resolve() == airflow.passwords_file.resolve()
    for escape in (f"docs/{up.replace('..', '%2e%2e')}", f"docs/{up.replace('/', '%2f')}"):
        code, _, body = request(f"{url}{VIEW}{escape}", bearer)
        assert code == 404 and password not in body, (escape, code)

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            anonymous = browser.new_page()
            anonymous.goto(f"{url}{VIEW}")
            anonymous.wait_for_url(re.compile(r"/auth/login\?next="), timeout=30_000)
            expect(anonymous.locator("input[name='username']")).to_be_visible(timeout=30_000)
            assert "Open incidents" not in anonymous.content() and EXCHANGE not in anonymous.content()
            anonymous.context.close()

            page = browser.new_page(viewport={"width": 1400, "height": 2400})  # the whole view in its frame
            page.goto(f"{url}/")  # Airflow's UI sends the anonymous user to its login page
            page.locator("input[name='username']").fill(airflow.settings.airflow.admin_user)
            page.locator("input[name='password']").fill(password)
            page.locator("button[type='submit']").click()
            nav = page.locator("a[href$='/plugin/k2']")  # the external view's top-level nav item
            expect(nav).to_be_visible(timeout=60_000)
            nav.click()
            page.wait_for_url(re.compile(r"/plugin/k2"), timeout=30_000)

            view = page.frame_locator("iframe[title='K2']")
            expect(view.get_by_role("heading", name="K2 streams")).to_be_visible(timeout=60_000)
            streams = view.locator("table").first
            expect(streams).to_contain_text(EXCHANGE)
            expect(streams).to_contain_text("latency_p99_s critical")
            expect(view.locator("text=Kafka 1234 = Bronze 1234 = Silver accounted 1200 + waiting 34")).to_be_visible()
            incident = view.locator("td.critical")
            expect(incident).to_have_text("critical")
            expect(view.locator("tr", has=incident)).to_contain_text(f"{CRITICAL_LATENCY_S:g}")
            expect(view.locator("svg polyline")).to_have_count(4)  # one line per chart, one exchange
            expect(view.locator("text=6 measurements from ops.stream_metrics")).to_be_visible()
            expect(view.locator("text=FAILED")).to_be_visible()
            expect(view.get_by_role("link", name="Data Docs")).to_have_count(2)

            shot = tmp_path / "k2-view.png"
            page.screenshot(path=str(shot), full_page=True)
            assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and shot.stat().st_size > 30_000
            # what the screenshot shows: the charts' lines and the critical incident, drawn
            assert colour_pixels(shot, COLOURS[0]) > 300
            assert colour_pixels(shot, "#b00020") > 20

            # the failed run's Data Docs, served by the view inside Airflow's UI
            failed_run = view.locator("tr", has_text="run_h11")
            # the view's own table names the suite and run too: wait for the frame to reach the docs page
            docs_page = f"{url}{VIEW}docs/validations/"
            with page.expect_event(
                "framenavigated", predicate=lambda frame: frame.url.startswith(docs_page), timeout=30_000
            ) as navigated:
                failed_run.get_by_role("link", name="Data Docs").click()
            docs = navigated.value
            expect(view.locator("body")).to_contain_text("gold_1m.binance", timeout=30_000)
            expect(view.locator("body")).to_contain_text("run_h11")
            assert docs.evaluate("fetch('/api/v2/dags').then(r => r.status, () => 'blocked')") == "blocked"
            # the docs' own links stay in the view, logged in: the run's suite
            view.get_by_role("link", name="gold_1m.binance").first.click()
            expect(view.locator("body")).to_contain_text("A collection of Expectations defined", timeout=30_000)
            page.screenshot(path=str(tmp_path / "k2-data-docs.png"), full_page=True)
        finally:
            browser.close()
