"""The Spark JVMs' class-data sharing archive: used once built, named by the class path, and a build
that fails leaves nothing behind and says why (the JVMs then start without it)."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
from structlog.testing import capture_logs

from k2 import class_archive
from k2.jvm import JarSet
from k2.settings import Settings
from k2.spark import server_conf


@pytest.fixture
def archive(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    path = tmp_path / "class-archive" / "spark-venv-new.jsa"
    monkeypatch.setattr(class_archive, "archive_path", lambda _settings: path)
    return path


def test_a_driver_maps_the_archive_once_it_is_built(archive: Path) -> None:
    settings = Settings.from_env({})
    assert "SharedArchiveFile" not in server_conf(settings, "k2-test")["spark.driver.extraJavaOptions"]
    archive.parent.mkdir()
    archive.write_bytes(b"archive")
    options = server_conf(settings, "k2-test")["spark.driver.extraJavaOptions"]
    assert f"-XX:SharedArchiveFile={archive}" in options and "-XX:-DontCompileHugeMethods" in options
    # executors may run on hosts without the file
    assert "SharedArchiveFile" not in server_conf(settings, "k2-test")["spark.executor.extraJavaOptions"]


def test_the_archive_is_named_by_the_class_path(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    jar = tmp_path / "k2-local-fs.jar"
    jar.write_bytes(b"jar")
    monkeypatch.setattr(class_archive, "installed_jars", lambda _jvm: JarSet([], [tmp_path / "iceberg.jar"]))
    monkeypatch.setattr(class_archive, "local_fs_jar", lambda _jvm: jar)
    nio = class_archive.archive_path(Settings.from_env({}, jars_dir=tmp_path, spark_local_fs="nio"))
    hadoop = class_archive.archive_path(Settings.from_env({}, jars_dir=tmp_path, spark_local_fs="hadoop"))
    assert nio != hadoop and nio.parent == hadoop.parent == tmp_path / class_archive.ARCHIVE_DIR
    monkeypatch.setattr(class_archive, "installed_jars", lambda _jvm: JarSet([], [tmp_path / "iceberg-2.jar"]))
    assert class_archive.archive_path(Settings.from_env({}, jars_dir=tmp_path, spark_local_fs="nio")) != nio


def test_a_failed_build_leaves_nothing_and_says_why(archive: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def failing(_settings: Settings, _work: Path, partial: Path) -> subprocess.CompletedProcess[str]:
        partial.write_bytes(b"half an archive")
        return subprocess.CompletedProcess([], 1, "java.lang.OutOfMemoryError", "")

    monkeypatch.setattr(class_archive, "_train", failing)
    with capture_logs() as logs:
        assert class_archive.ensure_class_archive(Settings.from_env({})) is None
    assert list(archive.parent.iterdir()) == []
    failed = next(entry for entry in logs if entry["event"] == "class_archive.not_built")
    assert "OutOfMemoryError" in failed["output"] and "k2 jars" in failed["fix"]


def test_a_new_archive_replaces_its_installations_old_ones(archive: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    archive.parent.mkdir()
    (archive.parent / "spark-venv-old.jsa").write_bytes(b"this installation's, for another JDK")
    other_installation = archive.parent / "spark-venv2-new.jsa"
    other_installation.write_bytes(b"another virtualenv's, sharing the jars directory")

    def built(_settings: Settings, _work: Path, partial: Path) -> subprocess.CompletedProcess[str]:
        partial.write_bytes(b"archive")
        return subprocess.CompletedProcess([], 0, "", "")

    monkeypatch.setattr(class_archive, "_train", built)
    assert class_archive.ensure_class_archive(Settings.from_env({})) == archive
    assert sorted(archive.parent.iterdir()) == [archive, other_installation]


def test_switched_off_nothing_is_built_or_used(archive: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    archive.parent.mkdir()
    archive.write_bytes(b"archive")
    monkeypatch.setattr(class_archive, "_train", lambda *_: pytest.fail("built although switched off"))
    settings = Settings.from_env({"K2_SPARK_CLASS_ARCHIVE": "false"})
    assert class_archive.ensure_class_archive(settings) is None
    assert "SharedArchiveFile" not in server_conf(settings, "k2-test")["spark.driver.extraJavaOptions"]


def test_a_jars_directory_it_cannot_write_is_logged_not_raised(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    blocked = tmp_path / "read-only" / "class-archive" / "spark-venv-new.jsa"
    (tmp_path / "read-only").write_text("a file where the directory would be")
    monkeypatch.setattr(class_archive, "archive_path", lambda _settings: blocked)
    with capture_logs() as logs:
        assert class_archive.ensure_class_archive(Settings.from_env({})) is None
    assert [entry["event"] for entry in logs][-1] == "class_archive.not_built"
