"""A minimal SMTP server on loopback (EHLO, MAIL, RCPT, DATA, QUIT) that keeps what it receives."""

from __future__ import annotations

import socketserver
from email import message_from_bytes
from email.message import Message

from tests.fakes import LoopbackServer


class SmtpReceiver(LoopbackServer):
    def __init__(self) -> None:
        self.messages: list[Message] = []
        receiver = self

        class Handler(socketserver.StreamRequestHandler):
            def reply(self, line: str) -> None:
                self.wfile.write(line.encode() + b"\r\n")

            def handle(self) -> None:
                self.reply("220 k2-test ESMTP")
                while line := self.rfile.readline():
                    command = line.decode().strip().upper()
                    if command.startswith(("EHLO", "HELO")):
                        self.reply("250 k2-test")
                    elif command.startswith(("MAIL", "RCPT", "RSET", "NOOP")):
                        self.reply("250 OK")
                    elif command == "DATA":
                        self.reply("354 end with <CRLF>.<CRLF>")
                        body = b""
                        while (chunk := self.rfile.readline()) not in (b".\r\n", b""):
                            body += chunk[1:] if chunk.startswith(b"..") else chunk
                        receiver.messages.append(message_from_bytes(body))
                        self.reply("250 queued")
                    elif command == "QUIT":
                        self.reply("221 bye")
                        return
                    else:
                        self.reply("502 not implemented")

        self.server = socketserver.ThreadingTCPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.port = self.server.server_address[1]
        self.serve(self.server)
