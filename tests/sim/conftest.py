"""A tiny threaded HTTP server that serves canned TwiML per path and records every request.

It stands in for the callbroker server so the emulator can be tested on its own: each test
declares ``server.routes[path] = "<Response>…</Response>"`` (or a callable returning
``(status, content_type, body)``) and afterwards reads ``server.requests``.
"""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qsl, urlsplit

import pytest

TOKEN = "test-auth-token-0123456789abcdef"


@dataclass
class Seen:
    """One request as the server received it."""

    method: str
    path: str
    url: str  # full URL as received (with query string)
    query: dict[str, str]
    form: dict[str, str]
    headers: dict[str, str]
    at: float = field(default_factory=time.perf_counter)
    body: bytes = b""  # as received (what Telnyx signs)

    @property
    def params(self) -> dict[str, str]:
        """POST form or GET query: what a webhook handler reads."""
        return self.form if self.method == "POST" else self.query

    @property
    def signature(self) -> str:
        return self.headers.get("x-twilio-signature", "")


Route = str | Callable[[Seen], tuple[int, str, str]]


class TwimlServer:
    def __init__(self) -> None:
        self.routes: dict[str, Route] = {}
        self.requests: list[Seen] = []
        self._lock = threading.Lock()
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args) -> None:  # keep test output quiet
                pass

            def setup(self) -> None:
                super().setup()
                # headers and body go out in two writes: without this, Nagle + delayed ACK add 40 ms
                self.request.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

            def _handle(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                received = self.rfile.read(length) if length else b""
                raw = received.decode("utf-8")
                parts = urlsplit(self.path)
                seen = Seen(
                    method=self.command,
                    path=parts.path,
                    url=server.url + self.path,
                    query=dict(parse_qsl(parts.query, keep_blank_values=True)),
                    form=dict(parse_qsl(raw, keep_blank_values=True)),
                    headers={k.lower(): v for k, v in self.headers.items()},
                    body=received,
                )
                with server._lock:
                    server.requests.append(seen)
                route = server.routes.get(parts.path, "<Response/>")
                if callable(route):
                    status, content_type, body = route(seen)
                else:
                    status, content_type, body = 200, "text/xml", route
                data = body.encode("utf-8")
                self.send_response(status)
                self.send_header("Content-Type", content_type)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                try:
                    self.wfile.write(data)
                except (BrokenPipeError, ConnectionResetError):
                    pass  # the emulator stopped waiting (the timeout tests): nothing to answer

            do_GET = _handle
            do_POST = _handle

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, args=(0.05,), daemon=True)

    def start(self) -> None:
        self.thread.start()

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()

    def to(self, path: str) -> list[Seen]:
        with self._lock:
            return [r for r in self.requests if r.path == path]

    def paths(self) -> list[str]:
        with self._lock:
            return [r.path for r in self.requests]


@pytest.fixture
def server():
    srv = TwimlServer()
    srv.start()
    yield srv
    srv.stop()


@pytest.fixture
def carrier(server):
    from callbroker.sim.emulator import Carrier

    with Carrier(server.url, TOKEN, seed=7, timeout=5.0) as c:
        yield c
