"""Where K2's own files are, the one definition of each location.

Everything K2 needs at run time ships inside its packages and is found with ``importlib.resources``,
never through a checkout or the working directory: the DAG files, the Great Expectations project, the
Maven POMs (``k2/bundle/...``) and the files spark-submit runs (the ``spark_jobs`` package). An
editable install finds the same files in the checkout, because there they are the package.

Only the defaults of the state directory and the jars directory depend on how K2 was installed:
from a checkout (editable install) they stay in the checkout (``.k2/``, ``jvm/lib/``), as the
README's quick start expects; an installed wheel keeps everything under ``~/.k2``.
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path

from k2.errors import K2Error

DISTRIBUTION = "k2-lakehouse"


def _package_dir(package: str, *parts: str) -> Path:
    found = resources.files(package).joinpath(*parts)
    if not isinstance(found, Path):  # a zip import: Airflow and spark-submit need real files
        raise K2Error(
            f"K2's package data {package}/{'/'.join(parts)} is not a directory on disk ({found})",
            "install K2 with pip (`pip install k2-lakehouse` or the wheel), not as a zip file.",
        )
    return found


BUNDLE = _package_dir("k2", "bundle")
DAGS_DIR = BUNDLE / "dags"  # the DAG files: Airflow's dags_folder, or a DAG bundle's path
EXPECTATIONS_DIR = BUNDLE / "expectations"  # the GX project whose suites gate each layer
JVM_DIR = BUNDLE / "jvm"  # Maven POMs listing the JVM artifacts, and Maven's settings
SPARK_JOBS_DIR = _package_dir("spark_jobs")  # what spark-submit (or a Spark Connect client) runs


def spark_job_file(name: str) -> Path:
    """The entry point ``spark_jobs/<name>.py``."""
    path = SPARK_JOBS_DIR / f"{name}.py"
    if not path.is_file():
        raise K2Error(f"K2's Spark entry point {path} is missing", "reinstall K2 (`pip install --force-reinstall`).")
    return path


def _checkout() -> Path | None:
    """The checkout K2 runs from (an editable install), else None."""
    root = Path(__file__).resolve().parents[2]
    pyproject = root / "pyproject.toml"
    if pyproject.is_file() and f'name = "{DISTRIBUTION}"' in pyproject.read_text():
        return root
    return None


CHECKOUT = _checkout()
# the state directory, unless K2_HOME says otherwise
DEFAULT_HOME = CHECKOUT / ".k2" if CHECKOUT else Path("~/.k2").expanduser()
# where `k2 jars` puts the JVM artifacts, unless K2_JARS_DIR says otherwise: shared by every K2_HOME
DEFAULT_JARS_DIR = CHECKOUT / "jvm" / "lib" if CHECKOUT else Path("~/.k2/jars").expanduser()
