"""One jars resolution at a time per jars directory: a resolution deletes the previous one's jars
first, so a second `k2` command or test worker must wait for the first, never resolve beside it."""

from __future__ import annotations

import fcntl
from pathlib import Path

import pytest

from k2.jvm import _resolution_lock


def lock_is_free(jars_dir: Path) -> bool:
    """Try the lock as another process would: a new open file description, without waiting."""
    with (jars_dir / ".resolution.lock").open("a") as other:
        try:
            fcntl.flock(other, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return False
        fcntl.flock(other, fcntl.LOCK_UN)
        return True


def test_a_resolution_holds_the_directory_lock_until_it_ends(tmp_path: Path) -> None:
    jars_dir = tmp_path / "jars"  # created by the lock: a fresh machine has none yet
    with _resolution_lock(jars_dir):
        assert not lock_is_free(jars_dir)
    assert lock_is_free(jars_dir)


def test_a_failed_resolution_releases_the_lock(tmp_path: Path) -> None:
    with pytest.raises(RuntimeError), _resolution_lock(tmp_path):
        raise RuntimeError("maven failed")
    assert lock_is_free(tmp_path)


def test_a_jars_directory_that_cannot_be_written_goes_without_the_lock(tmp_path: Path) -> None:
    blocker = tmp_path / "provisioned"
    blocker.write_text("a file where the directory's parent would be")
    with _resolution_lock(blocker / "jars"):
        pass  # entered: nothing resolves into a read-only directory, so nothing to guard
    assert not (blocker / "jars").exists()
