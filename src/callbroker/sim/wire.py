"""The emulator's HTTP client: ``http.client`` from the standard library, one connection per thread and server.

The carrier emulator shares the machine with the server it drives (tests, the demo, ``callbroker bench``),
so every millisecond it spends on a request is one the server doesn't get. ``httpx`` spent about 2 ms of
CPU per webhook here, most of it in its request and response models; this client spends about a third of
that for the same request on the wire. What it keeps of a general HTTP client is what the carrier needs:

- connections are kept per thread and per server and reused while the server keeps them open (a server
  that answers ``Connection: close``, like gunicorn's sync workers, gets a new connection per request);
  a kept connection that the server has closed meanwhile is replaced once, transparently, when it fails
  before any answer arrived (the server never saw the request);
- the carrier's three timeouts: to connect, to read, and in total (``#ct``, ``#rt``, ``#tt`` on a URL);
- ``https`` with the given TLS context; no proxies, redirects are not followed (Twilio doesn't either);
- a forked child opens its own connections (the parent's stay the parent's).

Failures are raised as :class:`WireError` (connection refused, reset, timeout, malformed answer).
"""

from __future__ import annotations

import http.client
import os
import socket
import ssl
import threading
import time
from collections.abc import Mapping
from typing import NamedTuple
from urllib.parse import urlencode, urlsplit

__all__ = ["Answer", "Wire", "WireError"]


class WireError(Exception):
    """The request got no HTTP answer: the message says why (``ConnectError: …``, ``ReadTimeout: …``)."""


class Answer(NamedTuple):
    status: int
    content_type: str
    content: bytes

    @property
    def text(self) -> str:
        charset = "utf-8"
        for part in self.content_type.split(";")[1:]:
            key, _, value = part.strip().partition("=")
            if key.lower() == "charset" and value:
                charset = value.strip('"')
        try:
            return self.content.decode(charset, errors="replace")
        except LookupError:  # an unknown charset name
            return self.content.decode("utf-8", errors="replace")


# Errors that mean "the kept connection was closed by the server before it read this request".
_STALE = (http.client.RemoteDisconnected, ConnectionResetError, BrokenPipeError, ConnectionAbortedError)


class Wire:
    """Sends requests; safe to share between threads (each thread keeps its own connections)."""

    def __init__(self, headers: Mapping[str, str] | None = None, ssl_context: ssl.SSLContext | None = None) -> None:
        self.headers = dict(headers or {})
        self.ssl_context = ssl_context
        self._local = threading.local()
        self._all: list[http.client.HTTPConnection] = []  # every connection opened, to close them all
        self._lock = threading.Lock()
        self._pid = os.getpid()

    def request(self, method: str, url: str, *, data: Mapping[str, str] | None = None,
                headers: Mapping[str, str] | None = None, connect: float = 5.0, read: float = 15.0,
                total: float = 15.0) -> Answer:
        """One request; ``data`` is sent form-encoded. Raises :class:`WireError` when no answer came."""
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise WireError(f"UnsupportedProtocol: {url!r} is not an http(s) URL")
        target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        body = None
        sent = {**self.headers, **(headers or {})}
        if data is not None:
            body = urlencode(data).encode()
            sent["Content-Type"] = "application/x-www-form-urlencoded"
        sent.setdefault("Accept", "*/*")
        deadline = time.monotonic() + total
        key = (parts.scheme, parts.netloc)
        kept = self._kept().pop(key, None)
        if kept is not None:
            try:
                return self._exchange(kept, key, method, target, body, sent, read, deadline)
            except _STALE:
                self._discard(kept)  # closed by the server while idle: once more on a new connection
            except WireError:
                self._discard(kept)
                raise
        conn = self._connect(parts, connect, deadline)
        try:
            return self._exchange(conn, key, method, target, body, sent, read, deadline)
        except _STALE as exc:
            self._discard(conn)
            raise WireError(f"RemoteProtocolError: {exc.__class__.__name__}: {exc}") from exc

    def close(self) -> None:
        with self._lock:
            conns, self._all = self._all, []
        for conn in conns:
            conn.close()

    # -- internals

    def _kept(self) -> dict[tuple[str, str], http.client.HTTPConnection]:
        if self._pid != os.getpid():  # a forked child: the parent's connections are the parent's to use
            self._local, self._all, self._lock, self._pid = threading.local(), [], threading.Lock(), os.getpid()
        kept = getattr(self._local, "kept", None)
        if kept is None:
            kept = self._local.kept = {}
        return kept

    def _connect(self, parts, connect: float, deadline: float) -> http.client.HTTPConnection:
        timeout = max(0.001, min(connect, deadline - time.monotonic()))
        if parts.scheme == "https":
            conn: http.client.HTTPConnection = http.client.HTTPSConnection(
                parts.hostname, parts.port, timeout=timeout, context=self.ssl_context)
        else:
            conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=timeout)
        try:
            conn.connect()
        except TimeoutError as exc:
            conn.close()
            raise WireError(f"ConnectTimeout: {exc or 'timed out'}") from exc
        except OSError as exc:
            conn.close()
            raise WireError(f"ConnectError: {exc}") from exc
        conn.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        with self._lock:
            self._all.append(conn)
        return conn

    def _discard(self, conn: http.client.HTTPConnection) -> None:
        conn.close()
        with self._lock:
            if conn in self._all:
                self._all.remove(conn)

    def _exchange(self, conn, key, method, target, body, headers, read: float, deadline: float) -> Answer:
        """Send and read one answer on ``conn``; keep ``conn`` for the next request when the server allows.

        Raises one of ``_STALE`` when the connection was found closed before any answer began (the caller
        may send the request again on a new connection), else :class:`WireError`.
        """
        try:
            conn.sock.settimeout(max(0.001, min(read, deadline - time.monotonic())))
            conn.request(method, target, body=body, headers=headers)
            response = conn.getresponse()
        except _STALE:
            raise
        except (OSError, http.client.HTTPException) as exc:
            raise self._failed(conn, exc) from exc
        try:
            if conn.sock is not None:  # None: the answer closes the connection (the body is read from it still)
                conn.sock.settimeout(max(0.001, min(read, deadline - time.monotonic())))
            content = response.read()
        except (OSError, http.client.HTTPException) as exc:
            raise self._failed(conn, exc) from exc
        if response.will_close:
            self._discard(conn)
        else:
            self._kept()[key] = conn
        return Answer(response.status, response.getheader("Content-Type", ""), content)

    def _failed(self, conn: http.client.HTTPConnection, exc: BaseException) -> WireError:
        self._discard(conn)
        if isinstance(exc, TimeoutError):
            return WireError(f"ReadTimeout: {exc or 'timed out'}")
        return WireError(f"{exc.__class__.__name__}: {exc}")
