"""A Slack-compatible webhook receiver on loopback that records what it was sent."""

from __future__ import annotations

import json
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from tests.fakes import LoopbackServer


class WebhookReceiver(LoopbackServer):
    def __init__(self) -> None:
        self.received: list[dict[str, Any]] = []
        self.refuse = False  # answer 503, as a webhook having an outage would
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                if receiver.refuse:
                    self.send_response(503)
                    self.end_headers()
                    return
                receiver.received.append(json.loads(body))
                self.send_response(200)
                self.end_headers()
                self.wfile.write(b"ok")

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hooks/k2"
        self.serve(self.server)

    def alerts(self, source_prefix: str = "") -> list[dict[str, Any]]:
        return [r["k2"] for r in list(self.received) if r["k2"]["source"].startswith(source_prefix)]

    def severities(self, source_prefix: str = "") -> list[str]:
        return [a["severity"] for a in self.alerts(source_prefix)]
