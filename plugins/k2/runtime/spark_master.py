"""A Spark standalone master as any host sees it: its JSON status and its application kill, on the
master's web UI port (K2_SPARK_MASTER_UI_PORT). Through it a check on one host ends a stream whose
driver runs on another: the master removes the application, the driver's SparkContext stops, and
the stream's process exits there (Spark refuses cluster deploy mode for Python applications on a
standalone master, so drivers live where they were submitted, not on a worker)."""

from __future__ import annotations

import json
import time
import urllib.parse
import urllib.request
from dataclasses import dataclass

from k2.settings import Settings


@dataclass(frozen=True)
class ClusterState:
    """What the master says (its JSON status): live workers and running applications."""

    alive_workers: int
    cores: int
    cores_used: int
    applications: dict[str, str]  # application id -> name


class SparkMaster:
    def __init__(self, ui_url: str) -> None:
        self.ui_url = ui_url.rstrip("/")

    @classmethod
    def of(cls, settings: Settings) -> SparkMaster | None:
        """The master of ``settings``' Spark cluster (the first host of a ``spark://a,b`` list);
        None in local mode or on another kind of cluster."""
        master = settings.spark.master
        if not master.startswith("spark://"):
            return None
        host = master.removeprefix("spark://").split(",")[0].rsplit(":", 1)[0]
        return cls(f"http://{host}:{settings.spark.master_ui_port}")

    def state(self) -> ClusterState:
        with urllib.request.urlopen(f"{self.ui_url}/json/", timeout=5) as response:
            status = json.load(response)
        alive = [w for w in status.get("workers", []) if w.get("state") == "ALIVE"]
        return ClusterState(
            alive_workers=len(alive),
            cores=sum(w["cores"] for w in alive),
            cores_used=sum(w["coresused"] for w in alive),
            applications={a["id"]: a["name"] for a in status.get("activeapps", [])},
        )

    def kill_application(self, app_id: str, timeout_s: float = 30.0) -> bool:
        """Ask the master to remove the application (its UI's kill, spark.ui.killEnabled, on by
        default); True once it is no longer among the running ones. Raises OSError when the master
        does not answer."""
        form = urllib.parse.urlencode({"id": app_id, "terminate": "true"}).encode()
        request = urllib.request.Request(f"{self.ui_url}/app/kill/", data=form, method="POST")
        with urllib.request.urlopen(request, timeout=10):
            pass
        deadline = time.monotonic() + timeout_s
        while app_id in self.state().applications:
            if time.monotonic() >= deadline:
                return False
            time.sleep(0.5)
        return True
