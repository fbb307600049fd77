"""A class-data sharing archive for K2's Spark JVMs (the JDK's dynamic CDS, JDK 13+).

Every Spark JVM K2 starts (each Bronze stream, the Spark Connect server, a spark-submit batch job,
an in-process session) loads and verifies the same 20,000-odd classes before it does any work. With
the archive it maps them, already parsed and verified, from one file the JVMs share. Measured on 2
cores (2026-12-05): a short Iceberg job's JVM used 26 s of CPU and 18.3 s of wall time without it,
19 s and 13.8 s with it.

`k2 jars` (and `k2 up`) builds it once: a short training run of the work K2's JVMs do (a stream
into Iceberg, Silver-like parsing, a MERGE) in a throwaway catalog, 30-60 s. The archive is named
by what it depends on (the JDK, pyspark, the class path, the connector jars), so a change builds a
new one; until then, or if it cannot be built, the JVMs simply start without it.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import os
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

from k2.errors import K2Error
from k2.jvm import installed_jars, local_fs_jar, pyspark_home, pyspark_version
from k2.log import get_logger
from k2.resources import spark_job_file
from k2.settings import Settings

log = get_logger(__name__)

ARCHIVE_DIR = "class-archive"  # under K2_JARS_DIR
TRAINING = "class_archive"  # spark_jobs/class_archive.py
_FORMAT = "1"  # bumped when the training run changes what the archive holds
# a stale or foreign archive is the JVM's to refuse; it then runs without one, and says nothing
_QUIET = "-Xlog:cds=off -Xlog:cds+dynamic=off"
_BUILD_TIMEOUT_S = 600


def archive_path(settings: Settings) -> Path:
    """Where the archive for this JDK, pyspark and class path is (whether it exists or not): named
    ``spark-<installation>-<inputs>.jsa``, as installations (virtualenvs) may share a jars directory."""
    java = shutil.which(settings.jvm.java) or settings.jvm.java
    java_file = Path(os.path.realpath(java))
    inputs = [
        _FORMAT,
        os.environ.get("JAVA_HOME", ""),  # spark-submit's JVM: JAVA_HOME's, else java on PATH
        f"{java_file}:{java_file.stat().st_mtime_ns if java_file.exists() else 0}",
        pyspark_version(),
        str(local_fs_jar(settings.jvm) if settings.spark.local_fs == "nio" else ""),  # on the class path
        *sorted(p.name for p in installed_jars(settings.jvm).spark_connectors),
    ]
    installation = hashlib.sha256(pyspark_home().encode()).hexdigest()[:8]
    digest = hashlib.sha256("\n".join(inputs).encode()).hexdigest()[:16]
    return settings.jvm.jars_dir / ARCHIVE_DIR / f"spark-{installation}-{digest}.jsa"


def java_options(settings: Settings) -> str:
    """The driver JVM options that use the archive, or nothing while there is none."""
    if not settings.spark.class_archive:
        return ""
    try:
        archive = archive_path(settings)
    except (K2Error, OSError):  # jars not resolved yet: the JVM's own start will say so
        return ""
    return f"-XX:SharedArchiveFile={archive} {_QUIET}" if archive.is_file() else ""


def ensure_class_archive(settings: Settings) -> Path | None:
    """The archive for this JDK, pyspark and class path, built now if missing (30-60 s); None
    when it cannot be built (logged with the cause: K2 runs as well without it, only slower)."""
    if not settings.spark.class_archive:
        return None
    archive = archive_path(settings)
    if archive.is_file():
        return archive
    partial = archive.with_name(f"{archive.name}.{os.getpid()}.partial")
    log.info("class_archive.building", archive=str(archive), expected="30-60 s, once per JDK and pyspark")
    started = time.monotonic()
    try:
        archive.parent.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory(prefix="k2-class-archive-") as work:
            result = _train(settings, Path(work), partial)
    except OSError as exc:  # a jars directory this user cannot write, say
        result = subprocess.CompletedProcess([], -1, str(exc), "")
    if result.returncode != 0 or not partial.is_file():
        with contextlib.suppress(OSError):
            partial.unlink()
        log.warning(
            "class_archive.not_built",
            returncode=result.returncode,
            output=result.stdout[-1500:],
            consequence="Spark JVMs start without it, about 30% more CPU each",
            fix="run `k2 jars` again (JDK 13+, a writable K2_JARS_DIR), or set K2_SPARK_CLASS_ARCHIVE=false",
        )
        return None
    partial.replace(archive)
    # each is about 190 MB: this installation's archives for another JDK or other jars go
    for other in archive.parent.glob(f"{archive.name.rsplit('-', 1)[0]}-*.jsa"):
        if other != archive:
            other.unlink(missing_ok=True)
    log.info(
        "class_archive.built",
        archive=str(archive),
        seconds=round(time.monotonic() - started, 1),
        mb=round(archive.stat().st_size / 1e6),
    )
    return archive


def _train(settings: Settings, work: Path, archive: Path) -> subprocess.CompletedProcess[str]:
    """spark-submit of the training job as a stream's JVM starts (same class path and jars), in a
    catalog under ``work``, with K2's other settings left out of it; the JVM writes the archive as
    it exits."""
    from k2.spark import STREAM, spark_job  # k2.spark asks this module for the options

    training = Settings.from_env(
        {},
        home=work / "home",
        jars_dir=settings.jvm.jars_dir,
        java=settings.jvm.java,
        spark_local_fs=settings.spark.local_fs,
    )
    job = spark_job(training, name="k2-class-archive", application=spark_job_file(TRAINING), role=STREAM)
    options = f"{job.conf['spark.driver.extraJavaOptions']} -XX:ArchiveClassesAtExit={archive} {_QUIET}"
    job = dataclasses.replace(job, conf={**job.conf, "spark.driver.extraJavaOptions": options}, args=(str(work),))
    env = {key: value for key, value in os.environ.items() if not key.startswith("K2_")}
    env.update(job.env, K2_HOME=str(training.home), K2_JARS_DIR=str(settings.jvm.jars_dir))
    env.update(K2_JAVA=settings.jvm.java, K2_SPARK_LOCAL_FS=settings.spark.local_fs)
    command = job.command("local[2]")
    try:
        return subprocess.run(
            command, env=env, capture_output=True, text=True, timeout=_BUILD_TIMEOUT_S, check=False, cwd=work
        )
    except subprocess.TimeoutExpired as exc:
        return subprocess.CompletedProcess(command, -1, f"no end within {_BUILD_TIMEOUT_S} s: {exc}", "")


def train(work: Path) -> None:
    """What the training JVM runs: a little of each kind of work K2's Spark JVMs do, so their
    classes are loaded (and archived) when the JVM exits."""
    from pyspark.sql import functions as F

    from k2.settings import load_settings
    from k2.spark import STREAM, build_spark_session

    settings = load_settings()
    (settings.home / "lake").mkdir(parents=True, exist_ok=True)  # the SQLite catalog's directory
    spark = build_spark_session(settings, "k2-class-archive", role=STREAM)
    spark.sql("CREATE NAMESPACE IF NOT EXISTS training")
    spark.sql(
        "CREATE TABLE training.trades (symbol STRING, price DECIMAL(38, 18), at TIMESTAMP) USING iceberg "
        "PARTITIONED BY (days(at))"
    )
    inbox = work / "inbox"
    inbox.mkdir()
    (inbox / "1.json").write_text(
        "\n".join(
            f'{{"symbol": "S{i % 3}", "price": "{100 + i}.5", "at": "2026-01-01T00:00:{i:02d}Z"}}' for i in range(30)
        )
    )
    parsed = F.from_json("value", "symbol STRING, price STRING, at STRING")
    rows = (
        spark.readStream.text(str(inbox))
        .select(parsed.alias("t"))
        .select("t.symbol", F.col("t.price").cast("decimal(38,18)").alias("price"), F.to_timestamp("t.at").alias("at"))
    )
    query = (
        rows.writeStream.foreachBatch(lambda batch, _id: batch.writeTo("training.trades").append())
        .option("checkpointLocation", str(work / "checkpoint"))
        .trigger(availableNow=True)
        .start()
    )
    query.awaitTermination()
    spark.catalog.refreshTable("training.trades")  # the stream wrote through a session of its own
    bars = (
        spark.table("training.trades")
        .groupBy("symbol", F.window("at", "1 minute"))
        .agg(F.first("price").alias("open"), F.max("price").alias("high"), F.count("*").alias("trades"))
    )
    bars.select("symbol", "window.start", "open", "high", "trades").writeTo("training.bars").create()
    spark.sql(
        "MERGE INTO training.bars b USING (SELECT symbol, max(price) high FROM training.trades GROUP BY symbol) s "
        "ON b.symbol = s.symbol WHEN MATCHED THEN UPDATE SET b.high = s.high"
    )
    assert spark.table("training.bars").count() == 3
    spark.stop()
