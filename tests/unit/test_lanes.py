"""The suite's two lanes (tests/conftest.py): which tests one worker runs in order."""

from __future__ import annotations

from pathlib import Path

from tests.conftest import BESIDE_THE_SERVICE_TESTS, work_unit

INTEGRATION = Path(__file__).parents[1] / "integration"


def test_the_service_tests_share_one_lane_and_the_modules_beside_them_each_have_their_own() -> None:
    assert work_unit("tests/integration/test_cli.py::test_up_status_down") == "tests/integration"
    assert work_unit("tests/integration/test_outages.py::test_x[binance]") == "tests/integration"
    assert work_unit("tests/integration/test_query.py::test_a") == "tests/integration/test_query.py"
    assert work_unit("tests/integration/test_query.py::test_b") == "tests/integration/test_query.py"


def test_spark_tests_share_one_session_and_unit_tests_go_one_by_one() -> None:
    assert work_unit("tests/spark/test_gold_transforms.py::test_a") == "tests/spark"
    assert work_unit("tests/spark/test_silver_transforms.py::test_b") == "tests/spark"
    assert work_unit("tests/unit/test_settings.py::test_a") == "tests/unit/test_settings.py::test_a"
    assert work_unit("tests/dags/test_integrity.py::test_a[k2_medallion]") == (
        "tests/dags/test_integrity.py::test_a[k2_medallion]"
    )


def test_every_module_named_beside_the_service_tests_exists() -> None:
    """A renamed module would silently fall back into the service tests' lane."""
    assert [name for name in BESIDE_THE_SERVICE_TESTS if not (INTEGRATION / name).is_file()] == []
