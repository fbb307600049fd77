"""In-process stand-ins for external services the tests talk to over the network."""

from __future__ import annotations

import socketserver
import threading
from typing import Self


class LoopbackServer:
    """Runs a socketserver on a daemon thread for the length of a ``with`` block."""

    def serve(self, server: socketserver.BaseServer) -> None:
        self.server = server
        self.thread = threading.Thread(target=server.serve_forever, daemon=True)

    def __enter__(self) -> Self:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()
