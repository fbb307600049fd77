"""The stack's Airflow API client: a locked SQLite answers 500, or an answer does not come in time,
and the call is retried."""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from k2.errors import K2Error
from k2.runtime.airflow import AirflowServices
from k2.runtime.airflow_api import AirflowApi
from k2.settings import Settings
from tests.fakes import LoopbackServer


class FakeAirflow(LoopbackServer):
    """Answers /auth/token, then ``failures`` 500s, then 200 (or ``final`` for POSTs). With
    ``stalls``, the first call after the token waits until ``released`` is set before answering."""

    def __init__(self, failures: int, final: int = 200, stalls: bool = False) -> None:
        self.calls: list[tuple[str, str]] = []
        self.released = threading.Event()
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def _answer(self) -> None:
                self.rfile.read(int(self.headers.get("Content-Length", 0)))
                fake.calls.append((self.command, self.path))
                if self.path == "/auth/token":
                    code, body = 201, {"access_token": "t"}
                elif stalls and len(fake.calls) == 2:
                    fake.released.wait(30)  # the client gave up meanwhile; this answer reaches nobody
                    code, body = 500, {}
                elif len(fake.calls) - 1 <= failures:
                    code, body = 500, {"detail": "database is locked"}
                else:
                    code, body = (final if self.command == "POST" else 200), {}
                self.send_response(code)
                self.end_headers()
                self.wfile.write(json.dumps(body).encode())

            do_GET = do_PATCH = do_POST = _answer

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.server.server_address[1]
        self.serve(self.server)


def api_for(fake: FakeAirflow, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, **kwargs: float) -> AirflowApi:
    monkeypatch.setattr("time.sleep", lambda _s: None)  # the back-off itself is not under test
    airflow = AirflowServices(Settings.from_env({}, home=tmp_path, airflow_port=fake.port))
    airflow.home.mkdir(parents=True)
    airflow.passwords_file.write_text(json.dumps({"admin": "pw"}))
    return AirflowApi.of(airflow, **kwargs)


def test_a_server_error_is_retried_until_the_call_goes_through(tmp_path: Path, monkeypatch) -> None:
    with FakeAirflow(failures=2) as fake:
        api_for(fake, tmp_path, monkeypatch).unpause("k2_monitoring")
    assert fake.calls == [("POST", "/auth/token")] + [("PATCH", "/api/v2/dags/k2_monitoring")] * 3


def test_a_lasting_error_names_the_call_and_the_log(tmp_path: Path, monkeypatch) -> None:
    with FakeAirflow(failures=99) as fake, pytest.raises(K2Error) as failed:
        api_for(fake, tmp_path, monkeypatch).unpause("k2_monitoring")
    assert "PATCH /api/v2/dags/k2_monitoring answered 500" in failed.value.cause
    assert "api-server" in failed.value.fix or "log" in failed.value.fix


def test_a_trigger_whose_run_already_exists_is_done(tmp_path: Path, monkeypatch) -> None:
    with FakeAirflow(failures=1, final=409) as fake:
        api_for(fake, tmp_path, monkeypatch).trigger("k2_medallion", "k2_up__x")
    assert fake.calls[-1] == ("POST", "/api/v2/dags/k2_medallion/dagRuns")


def test_an_answer_that_does_not_come_in_time_is_asked_again(tmp_path: Path, monkeypatch) -> None:
    # urlopen raises a timeout while reading the answer unwrapped (not as a URLError)
    with FakeAirflow(failures=0, stalls=True) as fake:
        try:
            api_for(fake, tmp_path, monkeypatch, timeout_s=0.5).unpause("k2_monitoring")
        finally:
            fake.released.set()
    assert fake.calls == [("POST", "/auth/token")] + [("PATCH", "/api/v2/dags/k2_monitoring")] * 2


def test_a_client_waits_longer_than_a_locked_sqlite_makes_the_server_wait() -> None:
    from k2.runtime import airflow_sqlite
    from k2.runtime.airflow_api import DEFAULT_TIMEOUT_S

    assert DEFAULT_TIMEOUT_S > airflow_sqlite.BUSY_TIMEOUT_S
