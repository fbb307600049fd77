"""Debian packages K2's tests need beyond Python and the JVM, installed with apt-get.

The README's test command runs ``k2 system-packages`` so a fresh machine gets them from the
project's own code rather than from a manual step. Running K2 itself needs none of them.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from k2.errors import K2Error
from k2.log import get_logger

log = get_logger(__name__)


@dataclass(frozen=True)
class SystemPackage:
    name: str  # the Debian package
    command: str  # the program on PATH that proves it is installed
    why: str
    present: Callable[[], bool] | None = None  # for programs kept off PATH: how to find them instead

    def installed(self) -> bool:
        return self.present() if self.present else shutil.which(self.command) is not None


def _postgres_server_present() -> bool:
    """Debian keeps initdb and postgres in /usr/lib/postgresql/<version>/bin, off PATH."""
    from k2.runtime.postgres import find_bin_dir

    try:
        find_bin_dir()
    except K2Error:
        return False
    return True


TEST_PACKAGES: tuple[SystemPackage, ...] = (
    SystemPackage("chromium", "chromium", "the Airflow UI view is tested in headless Chromium"),
    SystemPackage(
        "docker-compose", "docker-compose", "the scale-out compose file is validated by `docker-compose config`"
    ),
    # the distribution's supported major version (15 on Debian 12, 17 on Debian 13): postgresql-<N> has
    # initdb, pg_ctl and postgres in /usr/lib/postgresql/<N>/bin
    SystemPackage(
        "postgresql",
        "initdb",
        "the Iceberg catalog and Airflow's metadata DB are tested on a PostgreSQL server (k2.runtime.postgres)",
        present=_postgres_server_present,
    ),
    SystemPackage("redis-server", "redis-server", "Airflow's CeleryExecutor is tested with a Redis broker"),
)


def missing(packages: Sequence[SystemPackage] = TEST_PACKAGES) -> list[SystemPackage]:
    return [p for p in packages if not p.installed()]


def _apt_prefix() -> list[str]:
    if os.geteuid() == 0:
        return []
    if shutil.which("sudo"):
        return ["sudo", "-n"]
    raise K2Error(
        "installing Debian packages needs root, and sudo is not available",
        "run `k2 system-packages` as root, or install the packages it lists with your package manager.",
    )


def ensure(packages: Sequence[SystemPackage] = TEST_PACKAGES) -> list[SystemPackage]:
    """Install the packages whose program is not on PATH; returns what was installed."""
    todo = missing(packages)
    if not todo:
        return []
    if shutil.which("apt-get") is None:
        names = " ".join(p.name for p in todo)
        raise K2Error(
            f"apt-get not found, and these packages are missing: {names}",
            f"install {names} with your system's package manager, then run the command again.",
        )
    apt = [*_apt_prefix(), "apt-get"]
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    names = [p.name for p in todo]
    log.info("installing Debian packages", packages=names)
    subprocess.run([*apt, "update", "-q"], check=False, env=env)
    result = subprocess.run([*apt, "install", "-y", "-q", "--no-install-recommends", *names], check=False, env=env)
    still = missing(todo)
    if result.returncode != 0 or still:
        raise K2Error(
            f"apt-get could not install {' '.join(p.name for p in still) or ' '.join(names)} "
            f"(exit {result.returncode})",
            "read apt-get's output above; check the machine reaches its Debian mirror, then run "
            "`k2 system-packages` again.",
        )
    return todo
