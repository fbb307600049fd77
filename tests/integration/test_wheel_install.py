"""K2 as a team that already runs Airflow adopts it: the wheel built from this checkout, installed
into a fresh virtualenv outside the checkout, used from a directory outside it. Nothing of the
checkout is on the path: the DAGs, GX suites, POMs and Spark entry points come from the installed
package. The DAGs import cleanly from there, `k2 jars` resolves from the shipped POMs, `k2 airflow
init` prepares the Airflow, and one k2_medallion run turns seeded Bronze trades into Silver and
Gold through that Airflow's own scheduler (spark-submit per task). Not `airflow dags test`: in
Airflow 3.3.2 it exits non-zero after a successful run of any DAG with a deadline, as k2_medallion
has (apache/airflow#73428)."""

from __future__ import annotations

import datetime as dt
import json
import os
import secrets
import shutil
import signal
import subprocess
import sys
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

import pytest

from k2.errors import K2Error
from k2.runtime.airflow_api import AirflowApi
from tests.helpers import free_port, wait_for

pytestmark = pytest.mark.integration

CHECKOUT = Path(__file__).resolve().parents[2]
EXCHANGE = "binance"
TRADES = 300
TASKS = ("wait_for_bronze", "silver", "gold")
EXPECTED_DAGS = {"k2_medallion", "k2_maintenance", "k2_monitoring", f"k2_bronze_stream_{EXCHANGE}"}

# run by the installed interpreter: Bronze rows as the stream writes them, ingested over the last
# minutes, and the stream's state saying it triggered since (so the batch's sensor finds Bronze settled)
SEED = """
import datetime as dt, json, sys, time
import pyarrow as pa
from k2.exchanges import get_exchange
from k2.feeds.simulator import TradeSimulator
from k2.lake.catalog import load_catalog
from k2.lake.tables import bronze_table
from k2.settings import load_settings
from k2.streams.state import StreamPaths, write_json

settings, trades, start = load_settings(), int(sys.argv[1]), dt.datetime.fromisoformat(sys.argv[2])
exchange = get_exchange("binance")
start_us = int(start.timestamp() * 1_000_000)
sim = TradeSimulator(exchange, list(exchange.default_symbols), seed=7, rate=10, start_us=start_us)
payloads, keys = [], []
while len(payloads) < trades:
    batch = sim.next_batch()
    payloads += batch.payloads
    keys += batch.keys
payloads, keys = payloads[:trades], keys[:trades]
table = load_catalog(settings.lake).load_table(bronze_table("binance").identifier)
schema = table.schema().as_arrow()
stamps = [start_us + 100_000 * (i + 1) for i in range(trades)]
table.append(pa.Table.from_pydict({
    "kafka_topic": pa.array([settings.topic_for("binance")] * trades),
    "kafka_partition": pa.array([0] * trades, pa.int32()),
    "kafka_offset": pa.array(range(trades), pa.int64()),
    "kafka_timestamp": pa.array(stamps, pa.timestamp("us", "UTC")),
    "kafka_timestamp_type": pa.array([0] * trades, pa.int32()),
    "key": pa.array(keys, pa.binary()),
    "value": pa.array(payloads, pa.binary()),
    "headers": pa.array([[]] * trades, schema.field("headers").type),
    "ingested_at": pa.array(stamps, pa.timestamp("us", "UTC")),
}, schema=schema))
write_json(StreamPaths.of(settings, "binance").ensure().idle, {"trigger_at": time.time()})
print(json.dumps({"bronze_rows": table.scan().to_arrow().num_rows}))
"""

COUNT = """
import json
from k2.lake.catalog import load_catalog
from k2.settings import load_settings
catalog = load_catalog(load_settings().lake)
print(json.dumps({t: catalog.load_table(t).scan().to_arrow().num_rows for t in ("silver.trades", "gold.ohlcv_1m")}))
"""


@dataclass(frozen=True)
class Installation:
    venv: Path
    work: Path  # the working directory: outside the checkout
    env: dict[str, str]

    def run(self, tool: str, *args: str, timeout: float = 300, **env: str) -> subprocess.CompletedProcess:
        result = subprocess.run(
            [str(self.venv / "bin" / tool), *args],
            cwd=self.work,
            env={**self.env, **env},
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
        assert result.returncode == 0, (
            f"{tool} {' '.join(args)[:200]}:\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}"
        )
        return result

    def python(self, code: str, *args: str) -> dict:
        return json.loads(self.run("python", "-c", code, *args).stdout.strip().splitlines()[-1])

    @cached_property
    def api(self) -> AirflowApi:
        """The running Airflow's REST API as its default admin (SimpleAuthManager's generated password):
        polling through it costs the tasks under test no `airflow` CLI process (4 s of CPU)."""
        passwords = Path(self.env["AIRFLOW_HOME"], "simple_auth_manager_passwords.json.generated")
        return AirflowApi(
            self.env["AIRFLOW__API__BASE_URL"], lambda: ("admin", json.loads(passwords.read_text())["admin"])
        )


COMPONENTS = ("api-server", "scheduler", "dag-processor", "triggerer")


@contextmanager
def running_airflow(inst: Installation, logs: Path) -> Iterator[None]:
    """The installed Airflow's four components, as a deployment runs them; stopped on exit."""
    procs: dict[str, subprocess.Popen] = {}
    try:
        for name in COMPONENTS:
            with (logs / f"{name}.log").open("wb") as out:
                procs[name] = subprocess.Popen(
                    [str(inst.venv / "bin" / "airflow"), name],
                    cwd=inst.work,
                    env=inst.env,
                    stdout=out,
                    stderr=subprocess.STDOUT,
                    start_new_session=True,
                )

        def healthy() -> bool:
            dead = [n for n, p in procs.items() if p.poll() is not None]
            assert not dead, f"Airflow {dead} exited; logs in {logs}"
            try:
                url = f"{inst.env['AIRFLOW__API__BASE_URL']}/api/v2/monitor/health"
                with urllib.request.urlopen(url, timeout=5) as response:
                    health = json.loads(response.read())
            except (urllib.error.URLError, OSError, ValueError):
                return False
            return all(health.get(k, {}).get("status") == "healthy" for k in ("metadatabase", "scheduler"))

        wait_for(healthy, 240, "the API server and the scheduler to be healthy", interval=2)
        yield
    finally:
        for proc in procs.values():
            os.killpg(proc.pid, signal.SIGTERM)
        for proc in procs.values():
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(30)


def last_json_line(result: subprocess.CompletedProcess) -> str:
    """The CLI's JSON output (warnings may come first, on stdout too)."""
    return next(ln for ln in reversed(result.stdout.splitlines()) if ln.startswith(("[", "{")))


def frozen_requirements(directory: Path) -> Path:
    """The versions of the tested development environment, as constraints: the install resolves to
    the same pinned stack, from the local pip cache (like Airflow's constraints file does)."""
    out = subprocess.run(
        [sys.executable, "-m", "pip", "freeze", "--exclude-editable"], capture_output=True, text=True, check=True
    ).stdout
    path = directory / "constraints.txt"
    path.write_text("\n".join(ln for ln in out.splitlines() if not ln.startswith(("k2-lakehouse", "-e "))))
    return path


@pytest.fixture(scope="module")
def installation(tmp_path_factory: pytest.TempPathFactory) -> Installation:
    root = tmp_path_factory.mktemp("wheel-install")
    assert not root.is_relative_to(CHECKOUT)
    built = subprocess.run(
        [sys.executable, "-m", "build", "--outdir", str(root / "dist"), str(CHECKOUT)],
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert built.returncode == 0, built.stdout[-3000:] + built.stderr[-3000:]
    (wheel,) = (root / "dist").glob("k2_lakehouse-*.whl")
    subprocess.run([sys.executable, "-m", "venv", str(root / "venv")], check=True, timeout=120)
    # --no-compile: the stack's byte-code is written as its modules are first imported (one pass over
    # everything installed took the install 111 s instead of 73 s; PYTHON* variables are not passed on)
    pip = [str(root / "venv" / "bin" / "python"), "-m", "pip", "install", "-q", "--no-compile"]
    installed = subprocess.run(
        [*pip, "-c", str(frozen_requirements(root)), str(wheel)],
        capture_output=True,
        text=True,
        timeout=900,
        check=False,
    )
    assert installed.returncode == 0, installed.stderr[-3000:]
    work = root / "work"
    work.mkdir()
    base = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("AIRFLOW", "K2_", "PYTHON", "VIRTUAL_ENV", "SPARK_", "PYSPARK"))
    }
    # the venv's bin first, as `source venv/bin/activate` does: spark-submit and airflow come from there
    path = f"{root / 'venv' / 'bin'}{os.pathsep}{base.get('PATH', '')}"
    env = {
        **base,
        "PATH": path,
        "AIRFLOW_HOME": str(root / "airflow"),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "K2_HOME": str(root / "k2"),
        "K2_JARS_DIR": str(root / "jars"),
        # a class archive of its own would take this test 50 s to build and save it 12 s; the checkout's
        # is built and checked in use by `k2 jars` and test_class_archive.py
        "K2_SPARK_CLASS_ARCHIVE": "false",
        "K2_EXCHANGES": EXCHANGE,
        "K2_SPARK_CONNECT": "off",  # one spark-submit per task: nothing outlives the test
        "K2_SPARK_UI_ENABLED": "false",
        "K2_SPARK_DRIVER_MEMORY": "1g",
        "K2_LOG_FORMAT": "logfmt",
    }
    api = f"http://127.0.0.1:{free_port()}"
    env.update(  # one configuration for every Airflow component, as a deployment has
        {
            "AIRFLOW__CORE__EXECUTOR": "LocalExecutor",
            "AIRFLOW__API__HOST": "127.0.0.1",
            "AIRFLOW__API__PORT": api.rsplit(":", 1)[1],
            "AIRFLOW__API__BASE_URL": api,
            "AIRFLOW__API__WORKERS": "1",
            "AIRFLOW__API__SECRET_KEY": secrets.token_urlsafe(32),
            "AIRFLOW__API_AUTH__JWT_SECRET": secrets.token_urlsafe(48),
            "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": f"{api}/execution/",
        }
    )
    inst = Installation(root / "venv", work, env)
    dags_folder = inst.run("k2", "airflow", "dags-folder").stdout.strip()
    inst.env["AIRFLOW__CORE__DAGS_FOLDER"] = dags_folder  # as the README tells an Airflow to
    inst.run("airflow", "db", "migrate")
    return inst


def test_the_wheel_carries_everything_and_nothing_comes_from_the_checkout(installation: Installation) -> None:
    site = installation.python(
        "import json, k2, spark_jobs; from k2 import resources as r; print(json.dumps({'k2': k2.__file__, "
        "'jobs': str(r.spark_job_file('medallion')), 'dags': str(r.DAGS_DIR), 'jvm': str(r.JVM_DIR), "
        "'gx': str(r.EXPECTATIONS_DIR), 'home': str(r.DEFAULT_HOME), 'checkout': str(r.CHECKOUT)}))"
    )
    assert site["checkout"] == "None"
    assert site["home"] == str(Path("~/.k2").expanduser())  # an installed K2's default state directory
    for name in ("k2", "jobs", "dags", "jvm", "gx"):
        assert Path(site[name]).is_relative_to(installation.venv), (name, site[name])
    dags = Path(installation.env["AIRFLOW__CORE__DAGS_FOLDER"])
    assert {p.name for p in dags.glob("*.py")} == {
        "maintenance.py",
        "medallion.py",
        "monitoring.py",
        "stream_supervisor.py",
    }

    # the JVM artifact lists ship too: Maven resolves them into a fresh jars directory
    jars = installation.run("k2", "jars", timeout=600).stdout
    assert f"{installation.env['K2_JARS_DIR']}/kafka-broker" in jars
    assert len(list(Path(installation.env["K2_JARS_DIR"], "spark-connectors").glob("*.jar"))) >= 5
    # the training job of the Spark JVMs' class archive ships too (switched off here, see above)
    assert "class-archive" in jars and (Path(site["jobs"]).parent / "class_archive.py").is_file()


def test_the_installed_dags_import_cleanly(installation: Installation, tmp_path: Path) -> None:
    """The DAG integrity checks (tests/dags/inspect_dags.py, copied out: it imports nothing of the
    checkout) on the installed DAG folder."""
    inspector = shutil.copy(CHECKOUT / "tests" / "dags" / "inspect_dags.py", tmp_path / "inspect_dags.py")
    dags = installation.env["AIRFLOW__CORE__DAGS_FOLDER"]
    report = json.loads(installation.run("python", str(inspector), dags).stdout.strip().splitlines()[-1])
    assert report["import_errors"] == {}
    assert set(report["dags"]) == EXPECTED_DAGS
    assert {f: s["heavy_modules"] for f, s in report["files"].items() if s["heavy_modules"]} == {}
    assert all(info["task_count"] > 0 and not info["has_cycle"] for info in report["dags"].values())


def test_airflow_init_and_the_plugin_in_the_fresh_airflow(installation: Installation) -> None:
    init = installation.run("k2", "airflow", "init").stdout
    assert "k2_spark" in init and "created" in init
    assert "k2_maintenance" in init
    pools = {
        p["pool"]: int(p["slots"])
        for p in json.loads(installation.run("airflow", "pools", "list", "-o", "json").stdout)
    }
    assert {"k2_spark": 1, "k2_maintenance": 1}.items() <= pools.items()
    plugins = json.loads(installation.run("airflow", "plugins", "-o", "json").stdout)
    assert [(p["name"], "EntryPoint(name='k2'" in p["source"]) for p in plugins] == [("k2", True)]


def unpaused(installation: Installation) -> bool:
    try:
        installation.api.unpause("k2_medallion")
    except K2Error as exc:
        if "answered 404" not in exc.cause:  # 404: not registered yet
            raise
        return False
    return True


@pytest.mark.timeout(900)
def test_one_medallion_run_from_the_installed_wheel(installation: Installation, tmp_path: Path) -> None:
    end = dt.datetime.now(dt.UTC).replace(microsecond=0)
    start = end - dt.timedelta(minutes=30)
    installation.run("k2", "airflow", "init")  # idempotent: the pools the Spark tasks wait in
    installation.run("k2", "lake", "init")
    seeded = installation.python(SEED, str(TRADES), (start + dt.timedelta(minutes=1)).isoformat())
    assert seeded == {"bronze_rows": TRADES}
    conf = {"exchange": EXCHANGE, "start": start.isoformat(), "end": end.isoformat(), "catch_up": False}
    with running_airflow(installation, tmp_path):
        # the DAG processor registers the DAG first: until then unpausing it fails
        wait_for(lambda: unpaused(installation), 180, "the DAG processor to register k2_medallion", interval=2)
        installation.run("airflow", "dags", "trigger", "k2_medallion", "--run-id", "wheel", "--conf", json.dumps(conf))

        def finished() -> str | None:
            state = installation.api.run_state("k2_medallion", "wheel")
            return state if state in ("success", "failed") else None

        state = wait_for(finished, 600, "the k2_medallion run to finish", interval=2)
    logs = "\n".join(p.read_text(errors="replace")[-2000:] for p in tmp_path.glob("*.log"))
    assert state == "success", logs
    states = installation.run("airflow", "tasks", "states-for-dag-run", "k2_medallion", "wheel", "-o", "json")
    by_task = {t["task_id"]: t["state"] for t in json.loads(last_json_line(states))}
    assert by_task == {
        **{name: "success" for name in ("check_params", *(f"{EXCHANGE}.{t}" for t in TASKS))},
        f"{EXCHANGE}.repair_gaps": "skipped",  # K2_GAPS_REPAIR is off by default
    }
    tables = installation.python(COUNT)
    assert tables["silver.trades"] == TRADES  # the simulator emits no duplicates without faults
    assert tables["gold.ohlcv_1m"] > 0
