"""The scale-out form's files, checked without a Docker engine: docker-compose.yaml rendered by a real
Compose implementation (`docker-compose config`, with a .env generated from .env.example), and the
Dockerfile linted by rules of our own (no hadolint here): pinned base image, non-root user, no
secrets, a health check or the reason for none."""

from __future__ import annotations

import re
import secrets
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from k2.settings import Settings

ROOT = Path(__file__).resolve().parents[2]
COMPOSE = ROOT / "docker-compose.yaml"
SERVICES = {
    "kafka",
    "postgres",
    "minio",
    "minio-init",
    "spark-master",
    "spark-worker",
    "airflow-init",
    "airflow-apiserver",
    "airflow-scheduler",
    "airflow-dag-processor",
    "airflow-triggerer",
}
ONE_SHOT = {"minio-init", "airflow-init"}  # they exit once done: no health check
PLACEHOLDER = "change-me"


def docker_compose() -> str:
    found = shutil.which("docker-compose")
    assert found, "docker-compose is not installed: run `k2 system-packages` (the README's test command does)"
    return found


def env_file(tmp_path: Path, drop: str = "") -> tuple[Path, dict[str, str]]:
    """.env.example with every placeholder replaced by a fresh secret (and ``drop`` left out)."""
    values: dict[str, str] = {}
    lines = []
    for line in (ROOT / ".env.example").read_text().splitlines():
        if "=" in line and not line.startswith("#"):
            key, value = line.split("=", 1)
            if key == drop:
                continue
            values[key] = secrets.token_hex(12) if value == PLACEHOLDER else value
            line = f"{key}={values[key]}"
        lines.append(line)
    path = tmp_path / ".env"
    path.write_text("\n".join(lines) + "\n")
    return path, values


def compose_config(env: Path, *flags: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [docker_compose(), "-f", str(COMPOSE), "--env-file", str(env), "config", *flags],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


@pytest.fixture(scope="module")
def rendered(tmp_path_factory: pytest.TempPathFactory) -> tuple[dict, dict[str, str]]:
    env, values = env_file(tmp_path_factory.mktemp("compose"))
    quiet = compose_config(env, "-q")
    assert quiet.returncode == 0, quiet.stderr
    full = compose_config(env)
    assert full.returncode == 0, full.stderr
    return yaml.safe_load(full.stdout), values


def host_ports(service: dict) -> list[tuple[str, int]]:
    """(host ip, host port) of each published port, in either of Compose's rendered forms."""
    out = []
    for port in service.get("ports", []):
        if isinstance(port, dict):
            out.append((port.get("host_ip", ""), int(port["published"])))
        else:
            parts = str(port).split("/")[0].split(":")
            out.append((parts[0] if len(parts) == 3 else "", int(parts[-2])))
    return out


def test_the_whole_scale_out_form_is_there(rendered) -> None:
    config, _ = rendered
    assert set(config["services"]) == SERVICES


def test_every_host_port_is_on_loopback_and_none_clashes(rendered) -> None:
    config, _ = rendered
    published = [(name, ip, port) for name, s in config["services"].items() for ip, port in host_ports(s)]
    assert published, "no host ports"
    assert [(n, ip) for n, ip, _ in published if ip != "127.0.0.1"] == []
    ports = [port for _, _, port in published]
    assert len(ports) == len(set(ports)), published
    assert [n for n, _, port in published if port == 8080] == ["airflow-apiserver"]  # Spark's UI is elsewhere


def test_every_image_is_pinned(rendered) -> None:
    config, _ = rendered
    for name, service in config["services"].items():
        image = service["image"]
        tag = image.rsplit(":", 1)[1] if ":" in image.rsplit("/", 1)[-1] else ""
        assert tag and tag != "latest", f"{name}: {image} has no pinned tag"


def test_every_long_running_service_has_a_health_check(rendered) -> None:
    config, _ = rendered
    missing = [n for n, s in config["services"].items() if n not in ONE_SHOT and not s.get("healthcheck")]
    assert missing == []


def test_services_start_in_order(rendered) -> None:
    config, _ = rendered
    services = config["services"]
    assert services["minio-init"]["depends_on"]["minio"]["condition"] == "service_healthy"
    init = services["airflow-init"]["depends_on"]
    assert init["minio-init"]["condition"] == "service_completed_successfully"
    assert init["postgres"]["condition"] == init["kafka"]["condition"] == "service_healthy"
    for name in ("airflow-apiserver", "airflow-scheduler", "airflow-dag-processor", "airflow-triggerer"):
        assert services[name]["depends_on"]["airflow-init"]["condition"] == "service_completed_successfully"
    assert "mc mb --ignore-existing k2/k2-lake" in " ".join(services["minio-init"]["command"])
    assert services["airflow-scheduler"]["command"] == ["airflow", "scheduler"]


def test_secrets_come_from_the_env_file_only(rendered) -> None:
    config, values = rendered
    scheduler = config["services"]["airflow-scheduler"]["environment"]
    assert values["AIRFLOW_DB_PASSWORD"] in scheduler["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"]
    assert scheduler["K2_S3_SECRET_ACCESS_KEY"] == values["MINIO_ROOT_PASSWORD"]
    text = COMPOSE.read_text()
    assert not re.search(r"(?i)(password|secret)[A-Z_]*:\s*[\"']?[A-Za-z0-9]{6,}[\"']?\s*$", text, flags=re.M)
    assert ".env" in (ROOT / ".gitignore").read_text().splitlines()


def test_a_missing_secret_stops_compose_with_its_name(tmp_path: Path) -> None:
    env, _ = env_file(tmp_path, drop="ICEBERG_DB_PASSWORD")
    result = compose_config(env, "-q")
    assert result.returncode != 0
    assert "set ICEBERG_DB_PASSWORD in .env" in result.stderr


def test_the_k2_settings_of_the_services_are_valid_and_cap_each_spark_job(rendered) -> None:
    config, _ = rendered
    for name in ("airflow-init", "airflow-scheduler", "airflow-triggerer", "airflow-apiserver"):
        env = config["services"][name]["environment"]
        settings = Settings.from_env({k: str(v) for k, v in env.items() if k.startswith("K2_")})
        assert settings.spark.master == "spark://spark-master:7077"
        assert (settings.spark.cores_max, settings.streams.cores_max) == (2, 1)
        assert settings.kafka.bootstrap_servers == "kafka:29092" and not settings.kafka.embedded
        assert env["AIRFLOW__CORE__EXECUTOR"] == "LocalExecutor"
        assert env["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"].startswith("postgresql+psycopg2://airflow:")
    kafka = config["services"]["kafka"]["environment"]
    assert "INTERNAL://kafka:29092" in kafka["KAFKA_ADVERTISED_LISTENERS"]
    assert "HOST://127.0.0.1:9092" in kafka["KAFKA_ADVERTISED_LISTENERS"]
    worker = config["services"]["spark-worker"]["environment"]
    assert int(worker["SPARK_WORKER_CORES"]) >= 2 * 1 + 2  # two streams and the batch fit on one worker


def test_the_postgres_init_script_is_mounted_and_executable() -> None:
    script = ROOT / "deploy" / "postgres-init.sh"
    assert script.stat().st_mode & 0o111
    assert "./deploy/postgres-init.sh:/docker-entrypoint-initdb.d/" in COMPOSE.read_text()
    assert "CREATE DATABASE airflow" in script.read_text() and "CREATE DATABASE iceberg" in script.read_text()


# --- Dockerfile ------------------------------------------------------------------------------------
DOCKERFILE = ROOT / "Dockerfile"


def instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) with continuation lines joined and comments dropped."""
    text = re.sub(r"\\\n", " ", DOCKERFILE.read_text())
    out = []
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            word, _, rest = line.partition(" ")
            out.append((word.upper(), rest.strip()))
    return out


def test_the_base_image_is_pinned() -> None:
    args = dict(a.split("=", 1) for word, a in instructions() if word == "ARG" and "=" in a)
    bases = [a.split()[0] for word, a in instructions() if word == "FROM"]
    assert bases, "no FROM"
    for base in bases:
        image = args.get(base.strip("${}"), base)
        assert re.fullmatch(r"[\w./-]+:\d+\.\d+\.\d+[\w.-]*", image), f"{image} is not pinned to a patch version"


def test_the_image_runs_as_a_non_root_user() -> None:
    steps = instructions()
    last_from = max(i for i, (word, _) in enumerate(steps) if word == "FROM")
    users = [a for word, a in steps[last_from:] if word == "USER"]
    assert users and users[-1].split(":")[0] not in ("root", "0")


def test_no_secret_is_baked_into_the_image() -> None:
    for word, args in instructions():
        if word in ("ENV", "ARG"):
            names = re.findall(r"([A-Za-z_][A-Za-z0-9_]*)=", args) or [args.split()[0]]
            assert not [n for n in names if re.search(r"(?i)password|secret|token|credential|_key$", n)], args
    assert not re.search(r"COPY\s+\.env\b", DOCKERFILE.read_text())


def test_a_health_check_or_the_reason_for_none() -> None:
    text = DOCKERFILE.read_text()
    match = re.search(r"^HEALTHCHECK\s+(.*)$", text, flags=re.M)
    assert match, "no HEALTHCHECK instruction"
    if match.group(1).strip() == "NONE":
        comment = text[: match.start()].rstrip().splitlines()[-1]
        assert comment.startswith("#"), "HEALTHCHECK NONE needs a comment saying why"


def test_python_packages_are_pinned_and_apt_lists_cleaned() -> None:
    for word, args in instructions():
        if word != "RUN":
            continue
        for command in re.findall(r"pip install ([^&]*)", args):
            packages = [p for p in command.split() if not p.startswith("-")]
            assert all("==" in p or p.endswith(".whl") for p in packages), command
        if "apt-get install" in args:
            assert "--no-install-recommends" in args and "rm -rf /var/lib/apt/lists/*" in args


def test_the_build_context_leaves_out_secrets_and_local_state() -> None:
    """`docker build .` sends only what .dockerignore lets through: never .env, .venv or .k2."""
    rules = [ln.strip() for ln in (ROOT / ".dockerignore").read_text().splitlines() if ln.strip()]
    rules = [r for r in rules if not r.startswith("#")]
    assert rules[0] == "**", "start from nothing, then allow what the Dockerfile copies"
    allowed = {r[1:].rstrip("/") for r in rules if r.startswith("!")}
    copied = {
        src for word, args in instructions() if word == "COPY" and "--from" not in args for src in args.split()[:-1]
    }
    assert copied <= allowed, copied - allowed
    assert not allowed & {".env", ".venv", ".k2", "jvm"}


def test_what_the_image_copies_exists() -> None:
    for word, args in instructions():
        if word == "COPY" and not args.startswith("--from"):
            for source in args.split()[:-1]:
                assert (ROOT / source).exists(), f"COPY {source}: missing"
