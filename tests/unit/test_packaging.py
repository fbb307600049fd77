"""What the distribution carries and how K2 finds it: package data through ``k2.resources``
(never the working directory), every bundled file declared as package data, and the Airflow plugin
registered once, through its entry point."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

from k2 import resources
from k2.runtime.airflow import AirflowServices
from k2.settings import Settings

ROOT = Path(__file__).resolve().parents[2]


def test_every_location_holds_what_k2_needs() -> None:
    assert {p.name for p in resources.DAGS_DIR.glob("*.py")} >= {"medallion.py", "maintenance.py", "monitoring.py"}
    assert (resources.EXPECTATIONS_DIR / "great_expectations.yml").is_file()
    assert {p.stem for p in (resources.EXPECTATIONS_DIR / "expectations").glob("*.json")} == {
        "bronze",
        "silver",
        "gold",
    }
    assert {p.parent.name for p in resources.JVM_DIR.glob("*/pom.xml")} == {"kafka-broker", "spark-connectors"}
    assert (resources.JVM_DIR / "maven-settings.xml").is_file()
    for job in ("bronze_ingest", "medallion", "maintenance"):
        assert resources.spark_job_file(job).is_file()


def test_a_missing_spark_entry_point_names_the_fix() -> None:
    from k2.errors import K2Error

    with pytest.raises(K2Error, match=r"Spark entry point .*nope\.py is missing") as failed:
        resources.spark_job_file("nope")
    assert "reinstall" in failed.value.fix


def test_every_bundled_file_is_declared_package_data() -> None:
    """A file added under k2/bundle that no package-data pattern matches would be missing from the wheel."""
    patterns = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["package-data"]["k2"]
    package = ROOT / "plugins" / "k2"
    declared = {p for pattern in patterns for p in package.glob(pattern)}
    bundled = {
        p
        for p in resources.BUNDLE.rglob("*")
        if p.is_file() and "__pycache__" not in p.parts and p.name != ".gitignore"
    }
    assert bundled - declared == set()
    assert declared, "no package data declared"


def test_defaults_do_not_depend_on_the_working_directory(tmp_path: Path) -> None:
    code = (
        "import json; from k2.settings import Settings; s = Settings.from_env({}); "
        "print(json.dumps([str(s.home), str(s.jvm.jars_dir), str(s.batch.expectations_dir)]))"
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("K2_")}
    elsewhere = subprocess.run(
        [sys.executable, "-c", code], cwd=tmp_path, env=env, capture_output=True, text=True, check=True
    )
    here = Settings.from_env({})
    assert json.loads(elsewhere.stdout) == [str(here.home), str(here.jvm.jars_dir), str(here.batch.expectations_dir)]
    assert here.batch.expectations_dir == resources.EXPECTATIONS_DIR
    assert not str(here.home).startswith(str(tmp_path))


def test_from_a_checkout_state_and_jars_stay_in_it() -> None:
    assert resources.CHECKOUT == ROOT  # this test suite runs from the editable install
    assert resources.DEFAULT_HOME == ROOT / ".k2"
    assert resources.DEFAULT_JARS_DIR == ROOT / "jvm" / "lib"


PLUGINS_REPORT = (
    "import json; from airflow.plugins_manager import get_import_errors, get_plugin_info; "
    "print(json.dumps({'plugins': [(p['name'], str(p['source'])) for p in get_plugin_info()], "
    "'errors': get_import_errors()}))"
)


def airflow_plugins(home: Path) -> dict:
    """The plugins Airflow loads, and its plugin import errors, with `k2 up`'s configuration."""
    env = AirflowServices(Settings.from_env({"K2_HOME": str(home)})).environment()
    # run outside the checkout: with the working directory on sys.path, the k2_lakehouse.egg-info an
    # editable install leaves in the checkout would count as a second distribution of K2
    result = subprocess.run(
        [sys.executable, "-c", PLUGINS_REPORT],
        cwd=home,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    return json.loads(result.stdout.strip().splitlines()[-1])


def test_the_plugin_is_registered_once_through_its_entry_point(tmp_path: Path) -> None:
    report = airflow_plugins(tmp_path)
    assert [name for name, _ in report["plugins"]] == ["k2"]
    assert "group='airflow.plugins'" in report["plugins"][0][1]
    assert report["errors"] == {}


def test_a_second_copy_in_the_plugins_folder_is_reported(tmp_path: Path) -> None:
    """Why no copy of the plugin belongs in a plugins folder: Airflow refuses the second ``k2``."""
    plugins = tmp_path / "airflow" / "plugins"
    plugins.mkdir(parents=True)
    (plugins / "k2_plugin.py").write_text("from k2.airflow.plugin import K2Plugin\n")
    report = airflow_plugins(tmp_path)
    assert any("already registered" in error for error in report["errors"].values())
