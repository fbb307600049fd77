"""The medallion tests where the Airflow tasks run them: on K2's embedded Spark Connect server, in a
process of their own on New York time. Tests marked on_connect (test_medallion.py, the catch-up
tests of test_completeness.py) run only here."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from xml.etree import ElementTree

import pytest

from tests.conftest import ON_SPARK_CONNECT
from tests.integration import test_completeness, test_medallion

pytestmark = pytest.mark.integration


@pytest.mark.timeout(900)
def test_the_medallion_tests_pass_on_spark_connect_in_a_process_outside_utc(tmp_path) -> None:
    """The same tables where the Airflow tasks compute them, on K2's embedded Spark Connect server,
    whatever the process time zone: the tests run as clients of that server, in a process on New York
    time (pyspark collects timestamps in the local zone)."""
    env = {**os.environ, "TZ": "America/New_York", ON_SPARK_CONNECT: "1"}
    tests = ["tests/integration/test_medallion.py", "tests/integration/test_completeness.py"]
    report = tmp_path / "connect-run.xml"
    # -n 0: one process (pyproject's -n 2 is for the whole suite), the server's only client
    pytest_args = ["-q", "-x", "-n", "0", "-p", "no:cacheprovider", "-m", "integration", f"--junitxml={report}"]
    result = subprocess.run(
        [sys.executable, "-m", "pytest", *pytest_args, "--basetemp", str(tmp_path / "run"), *tests],
        cwd=Path(__file__).resolve().parents[2],  # the checkout: the test paths are relative to it
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stdout[-5000:] + result.stderr[-2000:]
    outcomes = {
        case.get("name"): [c.tag for c in case if c.tag in ("failure", "error", "skipped")]  # []: passed
        for case in ElementTree.parse(report).iter("testcase")
    }
    expected = [
        name for module in (test_medallion, test_completeness) for name in dir(module) if name.startswith("test_")
    ]
    assert len(expected) > 10 and all(outcomes.get(name) == [] for name in expected), outcomes  # each ran, here
