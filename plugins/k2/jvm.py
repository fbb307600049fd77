"""JVM prerequisites: Java and Maven on PATH, and K2's jars resolved from the POMs K2 ships
(``k2/bundle/jvm/pom.xml``, read only: the modules are ``pom`` packaging, Maven writes no ``target/``).

Maven copies each module's runtime classpath into ``<jars_dir>/<module>/``. A stamp file records
the inputs of the last successful resolution (POMs, pyspark version, profiles) and the jars it
produced, so a repeated ``k2 jars`` with nothing changed returns in milliseconds without Maven.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path

from k2.errors import K2Error
from k2.log import get_logger
from k2.resources import JVM_DIR
from k2.settings import JvmSettings, Settings

log = get_logger(__name__)

MODULES = ("kafka-broker", "spark-connectors")
MIN_JAVA = 17
_STAMP = ".k2-resolved.json"


@dataclass(frozen=True)
class JarSet:
    kafka_broker: list[Path]
    spark_connectors: list[Path]


def java_major_version(java: str) -> int:
    """Major version of the given java launcher, or a K2Error saying how to install one."""
    exe = shutil.which(java)
    if exe is None:
        raise K2Error(
            f"Java launcher {java!r} not found on PATH",
            f"install JDK {MIN_JAVA} (e.g. `apt-get install openjdk-17-jdk-headless`) "
            "or point K2_JAVA at a java binary.",
        )
    out = subprocess.run([exe, "-version"], capture_output=True, text=True, check=False).stderr
    match = re.search(r'version "(\d+)(?:\.(\d+))?', out)
    if not match:
        raise K2Error(
            f"could not read the Java version from `{exe} -version`: {out.strip()[:200]}",
            f"install JDK {MIN_JAVA} or point K2_JAVA at one.",
        )
    major = int(match.group(1))
    return int(match.group(2)) if major == 1 and match.group(2) else major


def require_java(jvm: JvmSettings) -> str:
    major = java_major_version(jvm.java)
    if major < MIN_JAVA:
        raise K2Error(
            f"Java {major} found, K2 needs Java {MIN_JAVA}+ (Kafka 4 and Spark 4 require it)",
            f"install JDK {MIN_JAVA} and put it first on PATH, or set K2_JAVA.",
        )
    return shutil.which(jvm.java) or jvm.java


def pyspark_version() -> str:
    versions = {name: _installed_version(name) for name in ("pyspark", "pyspark-client")}
    if versions["pyspark"] is None:
        raise K2Error("pyspark is not installed", "install K2 with `pip install -e .` into this Python.")
    client = versions["pyspark-client"]
    if client is not None and client != versions["pyspark"]:
        raise K2Error(
            f"pyspark {versions['pyspark']} and pyspark-client {client} differ; pyspark-client "
            "overwrites pyspark's Python files, so a mismatch breaks Spark",
            "reinstall with the versions pinned in pyproject.toml (`pip install -e .`).",
        )
    return versions["pyspark"]


def _installed_version(dist: str) -> str | None:
    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return None


def maven_profiles(settings: Settings) -> list[str]:
    """Extra jars only the scale-out forms need: S3 file IO and S3A (about 65 MB of AWS SDK), for a
    warehouse or checkpoints on S3. The PostgreSQL JDBC driver is always resolved (spark-connectors/pom.xml
    says why)."""
    profiles = []
    if settings.lake.warehouse.startswith(("s3://", "s3a://")) or settings.streams.checkpoints:
        profiles.append("s3")
    return profiles


def _inputs_digest(spark_version: str, profiles: list[str]) -> str:
    h = hashlib.sha256()
    for pom in [*sorted(JVM_DIR.glob("**/pom.xml")), JVM_DIR / "maven-settings.xml"]:
        h.update(pom.read_bytes())
    h.update(f"spark={spark_version};profiles={','.join(profiles)}".encode())
    return h.hexdigest()


def _read_stamp(jars_dir: Path) -> dict | None:
    try:
        return json.loads((jars_dir / _STAMP).read_text())
    except (OSError, ValueError):
        return None


def ensure_jars(settings: Settings, *, force: bool = False) -> JarSet:
    """Resolve the JVM artifacts with Maven unless the last resolution is still valid. One process at
    a time per jars directory (two `k2` commands, or two test workers, asking at once): a resolution
    deletes the previous one's jars first."""
    with _resolution_lock(settings.jvm.jars_dir):
        return _ensure_jars(settings, force=force)


@contextlib.contextmanager
def _resolution_lock(jars_dir: Path) -> Iterator[None]:
    try:
        jars_dir.mkdir(parents=True, exist_ok=True)
        lock = (jars_dir / ".resolution.lock").open("a")
    except OSError:  # a read-only, provisioned jars directory: nothing resolves into it
        yield
        return
    with lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        yield


def _ensure_jars(settings: Settings, *, force: bool) -> JarSet:
    spark_version = pyspark_version()
    profiles = maven_profiles(settings)
    digest = _inputs_digest(spark_version, profiles)
    stamp = _read_stamp(settings.jvm.jars_dir)
    if not force and stamp and stamp.get("digest") == digest:
        jars = [settings.jvm.jars_dir / rel for rel in stamp["jars"]]
        if all(j.is_file() for j in jars):
            log.debug("jars.up_to_date", dir=str(settings.jvm.jars_dir), count=len(jars))
            _ensure_compiled(settings.jvm)
            return _jar_set(settings.jvm.jars_dir)
    require_java(settings.jvm)
    mvn = shutil.which(settings.jvm.maven)
    if mvn is None:
        raise K2Error(
            f"Maven launcher {settings.jvm.maven!r} not found on PATH",
            "install Maven 3.8+ (e.g. `apt-get install maven`) or set K2_MAVEN.",
        )
    for module in MODULES:  # stale jars of an older resolution must not linger on a classpath
        shutil.rmtree(settings.jvm.jars_dir / module, ignore_errors=True)
    cmd = [
        mvn,
        "-B",
        "-ntp",
        "-f",
        str(JVM_DIR / "pom.xml"),
        "-gs",
        str(JVM_DIR / "maven-settings.xml"),
        f"-Dspark.version={spark_version}",
        f"-Dk2.lib.dir={settings.jvm.jars_dir}",
        "package",
    ]
    if profiles:
        cmd.insert(1, "-P" + ",".join(profiles))
    log.info(
        "jars.resolving",
        spark_version=spark_version,
        profiles=profiles,
        dir=str(settings.jvm.jars_dir),
        note="first run downloads about 120 MB from Maven Central",
    )
    _run_maven(cmd)
    jar_set = _jar_set(settings.jvm.jars_dir)
    rel = [str(p.relative_to(settings.jvm.jars_dir)) for p in jar_set.kafka_broker + jar_set.spark_connectors]
    (settings.jvm.jars_dir / _STAMP).write_text(json.dumps({"digest": digest, "jars": rel}, indent=1))
    log.info("jars.resolved", kafka_broker=len(jar_set.kafka_broker), spark_connectors=len(jar_set.spark_connectors))
    _ensure_compiled(settings.jvm)
    return jar_set


def _ensure_compiled(jvm: JvmSettings) -> None:
    ensure_local_fs_jar(jvm)
    ensure_stream_listener_jar(jvm)


LOCAL_FS_MODULE = "local-fs"
LOCAL_FS_CLASS = "k2.hadoop.NioLocalFileSystem"
STREAM_LISTENER_MODULE = "stream-listener"
STREAM_LISTENER_CLASS = "k2.streams.ProgressListener"
METADATA_UPKEEP_CLASS = "k2.streams.MetadataUpkeep"


def ensure_local_fs_jar(jvm: JvmSettings) -> Path:
    """K2's local Hadoop file system (``bundle/jvm/local-fs``), compiled against pyspark's own
    Hadoop API."""
    return _compiled_jar(jvm, LOCAL_FS_MODULE, sorted((Path(pyspark_home()) / "jars").glob("hadoop-client-api-*.jar")))


def ensure_stream_listener_jar(jvm: JvmSettings) -> Path:
    """The Bronze streams' progress listener and metadata upkeep (``bundle/jvm/stream-listener``),
    compiled against pyspark's jars and the Kafka client and Iceberg runtime the Spark connectors
    resolved (``k2 jars``)."""
    connectors = jvm.jars_dir / "spark-connectors"
    resolved = sorted([*connectors.glob("kafka-clients-*.jar"), *connectors.glob("iceberg-spark-runtime-*.jar")])
    return _compiled_jar(jvm, STREAM_LISTENER_MODULE, [Path(pyspark_home()) / "jars" / "*", *resolved])


def _compiled_jar(jvm: JvmSettings, module: str, classpath: list[Path]) -> Path:
    """The Java sources of ``bundle/jvm/<module>``, compiled with the JDK's javac into
    ``<jars_dir>/<module>/``; named by the hash of the sources, the pyspark version and the class
    path, so a change compiles again and nothing changed costs nothing."""
    sources = sorted((JVM_DIR / module).rglob("*.java"))
    inputs = b"".join(p.read_bytes() for p in sources) + f"{pyspark_version()};{[p.name for p in classpath]}".encode()
    target = jvm.jars_dir / module / f"k2-{module}-{hashlib.sha256(inputs).hexdigest()[:12]}.jar"
    if target.is_file():
        return target
    java = Path(shutil.which(jvm.java) or jvm.java).resolve()
    javac, jar = java.parent / "javac", java.parent / "jar"
    if not javac.exists():
        raise K2Error(
            f"no javac next to {java}: K2 compiles a few small classes and needs a JDK, not only a JRE",
            f"install JDK {MIN_JAVA} (e.g. `apt-get install openjdk-17-jdk-headless`) or point K2_JAVA at its java.",
        )
    shutil.rmtree(target.parent, ignore_errors=True)
    classes = target.parent / "classes"
    classes.mkdir(parents=True)
    for cmd in (
        [str(javac), "--release", "17", "-nowarn", "-cp", os.pathsep.join(map(str, classpath)), "-d", str(classes)]
        + [str(p) for p in sources],
        [str(jar), "cf", str(target), "-C", str(classes), "."],
    ):
        result = subprocess.run(cmd, capture_output=True, text=True, check=False)
        if result.returncode != 0:
            raise K2Error(
                f"building {target.name} failed: {(result.stderr or result.stdout)[-1500:]}",
                "check the JDK (javac 17+) and that pyspark is installed with its jars; then run `k2 jars`.",
            )
    shutil.rmtree(classes)
    log.info("jars.built", module=module, jar=str(target))
    return target


def compiled_jar(jvm: JvmSettings, module: str) -> Path | None:
    """The jar ``k2 jars`` compiled for ``module``, or None before it did."""
    found = sorted((jvm.jars_dir / module).glob(f"k2-{module}-*.jar"))
    return found[-1] if found else None


def local_fs_jar(jvm: JvmSettings) -> Path | None:
    return compiled_jar(jvm, LOCAL_FS_MODULE)


def stream_listener_jar(jvm: JvmSettings) -> Path:
    """The streams' listener jar, or a K2Error telling to run ``k2 jars`` (never compiles by itself)."""
    jar = compiled_jar(jvm, STREAM_LISTENER_MODULE)
    if jar is None:
        raise K2Error(
            f"the Bronze streams' listener is not compiled in {jvm.jars_dir / STREAM_LISTENER_MODULE}",
            "run `k2 jars` (it compiles K2's Java sources with the JDK's javac).",
        )
    return jar


def pyspark_home() -> str:
    from importlib.util import find_spec

    spec = find_spec("pyspark")
    if spec is None or not spec.submodule_search_locations:
        raise K2Error("pyspark is not installed", "install K2 with `pip install -e .` into this Python.")
    return spec.submodule_search_locations[0]


def _run_maven(cmd: list[str]) -> None:
    """Run Maven, streaming its progress lines; on failure show the error lines."""
    tail: list[str] = []
    with subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True) as proc:
        assert proc.stdout is not None
        for line in proc.stdout:
            line = line.rstrip()
            tail = [*tail[-40:], line]
            if re.search(r"Building |Copying |BUILD ", line):
                print(f"  mvn: {line.removeprefix('[INFO] ')}", file=sys.stderr, flush=True)
    if proc.returncode != 0:
        errors = "\n".join(ln for ln in tail if "[ERROR]" in ln)[:3000] or "\n".join(tail[-15:])
        raise K2Error(
            f"Maven could not resolve K2's JVM artifacts:\n{errors}",
            "check network access to Maven Central (or your mirror in ~/.m2/settings.xml) and re-run `k2 jars`.",
        )


def _jar_set(jars_dir: Path) -> JarSet:
    return JarSet(
        kafka_broker=sorted((jars_dir / "kafka-broker").glob("*.jar")),
        spark_connectors=sorted((jars_dir / "spark-connectors").glob("*.jar")),
    )


def installed_jars(jvm: JvmSettings) -> JarSet:
    """The resolved jars, or a K2Error telling to run ``k2 jars`` (never resolves by itself)."""
    jar_set = _jar_set(jvm.jars_dir)
    if not jar_set.kafka_broker or not jar_set.spark_connectors:
        raise K2Error(
            f"K2's JVM artifacts are missing from {jvm.jars_dir}",
            "run `k2 jars` (needs Maven and network access to Maven Central).",
        )
    return jar_set
