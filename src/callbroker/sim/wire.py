"""The emulator's HTTP client: HTTP/1.1 on plain sockets, one connection per thread and server.

The carrier emulator shares the machine with the server it drives (tests, the demo, ``callbroker bench``),
so every millisecond it spends on a request is one the server doesn't get. ``httpx`` spent about 2 ms of
CPU per webhook here, most of it in its request and response models; the standard library's
``http.client`` a third of that, a fifth of which went on parsing each answer's headers with the
``email`` package (a MIME parser, for five header lines). This client writes each request in one
``sendall`` and reads the answer with a few ``readline`` calls (docs/benchmarks.md). What it keeps of a
general HTTP client is what the carrier needs:

- connections are kept per thread and per server and reused while the server keeps them open (a server
  that answers ``Connection: close``, like gunicorn's sync workers, gets a new connection per request);
  a kept connection found closed by the server before the request is sent is replaced. One that fails
  after the request was sent is a failure (the server may have read it): never sent again here, so the
  carrier's one retry is the only second delivery;
- answers with ``Content-Length``, chunked, or read until the server closes; ``1xx`` interim answers
  skipped; HTTP/1.0 servers (closing unless they say ``keep-alive``);
- the carrier's three timeouts: to connect, to read (each wait for bytes), and in total (``#ct``, ``#rt``,
  ``#tt`` on a URL): an answer that trickles in fails when the total runs out, however steady the trickle;
- ``https`` with the given TLS context; no proxies, redirects are not followed (Twilio does follow 301, 302,
  303 and 307, but doesn't say how it sends the request again: docs/emulator.md, "What it does not emulate");
- a forked child opens its own connections (the parent's stay the parent's).

Failures are raised as :class:`WireError` (connection refused, reset, timeout, malformed answer).
"""

from __future__ import annotations

import io
import math
import os
import select
import socket
import ssl
import threading
import time
from collections.abc import Mapping
from typing import NamedTuple
from urllib.parse import quote_plus, urlsplit

__all__ = ["Answer", "Wire", "WireError", "form_encode"]


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


class _Disconnected(ConnectionError):
    """The server closed the connection before sending any answer."""


class _Malformed(Exception):
    """The answer isn't HTTP/1.x as this client reads it."""


# Errors that mean "the kept connection was closed by the server before it read this request".
_STALE = (_Disconnected, ConnectionResetError, BrokenPipeError, ConnectionAbortedError)

_LINE_MAX = 65536  # longest status or header line read
_HEADERS_MAX = 100  # most header lines in one answer
_NO_BODY = frozenset({204, 304})


class _Receiver(io.RawIOBase):
    """A socket's receiving side for a buffered reader: every wait for bytes is bounded by the read timeout
    and by what is left of the request's total (``socket.makefile`` would give each wait the whole read
    timeout, so an answer trickling in could outlast the total)."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.read_timeout = 15.0
        self.deadline = math.inf  # time.monotonic() by which the whole answer must be in

    def readable(self) -> bool:
        return True

    def readinto(self, buffer) -> int:
        left = self.deadline - time.monotonic()
        if left <= 0:
            raise TimeoutError("the total timeout ran out while the answer came in")
        self.sock.settimeout(max(0.001, min(self.read_timeout, left)))
        return self.sock.recv_into(buffer)


class _Connection:
    """A socket and its buffered reader, to one ``host:port``."""

    __slots__ = ("sock", "receiver", "rfile", "host")

    def __init__(self, sock: socket.socket, host: str) -> None:
        self.sock = sock
        self.receiver = _Receiver(sock)
        self.rfile = io.BufferedReader(self.receiver)
        self.host = host

    def close(self) -> None:
        try:
            self.rfile.close()
        finally:
            self.sock.close()


class Wire:
    """Sends requests; safe to share between threads (each thread keeps its own connections)."""

    def __init__(self, headers: Mapping[str, str] | None = None, ssl_context: ssl.SSLContext | None = None) -> None:
        self.headers = dict(headers or {})
        self.ssl_context = ssl_context
        self._local = threading.local()
        self._all: list[_Connection] = []  # every connection opened, to close them all
        self._lock = threading.Lock()
        self._pid = os.getpid()

    def request(self, method: str, url: str, *, data: Mapping[str, str] | None = None,
                headers: Mapping[str, str] | None = None, connect: float = 5.0, read: float = 15.0,
                total: float = 15.0) -> Answer:
        """One request; ``data`` is sent form-encoded. Raises :class:`WireError` when no answer came."""
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise WireError(f"UnsupportedProtocol: {url!r} is not an http(s) URL")
        try:
            parts.port  # noqa: B018 - raises for a port that is not a number or out of range
        except ValueError as exc:
            raise WireError(f"InvalidURL: {url!r}: {exc}") from None
        target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        body = b""
        sent = {**self.headers, **(headers or {})}
        if data is not None:
            body = form_encode(data).encode()
            sent["Content-Type"] = "application/x-www-form-urlencoded"
        sent.setdefault("Accept", "*/*")
        payload = _request_bytes(method, target, parts.netloc, sent, body, data is not None or method == "POST")
        deadline = time.monotonic() + total
        key = (parts.scheme, parts.netloc)
        kept = self._kept().pop(key, None)
        if kept is not None and not _idle(kept.sock):
            self._discard(kept)  # closed by the server while idle (or it sent what nobody asked for)
            kept = None
        if kept is not None:
            try:
                return self._exchange(kept, key, method, payload, read, deadline)
            except _STALE as exc:  # sent, then found closed: the server may have read it, so not sent again
                self._discard(kept)
                raise WireError(f"RemoteProtocolError: {exc.__class__.__name__}: {exc}") from exc
            except WireError:
                self._discard(kept)
                raise
        conn = self._connect(parts, connect, deadline)
        try:
            return self._exchange(conn, key, method, payload, read, deadline)
        except _STALE as exc:
            self._discard(conn)
            raise WireError(f"RemoteProtocolError: {exc.__class__.__name__}: {exc}") from exc

    def close(self) -> None:
        with self._lock:
            conns, self._all = self._all, []
        for conn in conns:
            conn.close()

    # -- internals

    def _kept(self) -> dict[tuple[str, str], _Connection]:
        if self._pid != os.getpid():  # a forked child: the parent's connections are the parent's to use
            self._local, self._all, self._lock, self._pid = threading.local(), [], threading.Lock(), os.getpid()
        kept = getattr(self._local, "kept", None)
        if kept is None:
            kept = self._local.kept = {}
        return kept

    def _connect(self, parts, connect: float, deadline: float) -> _Connection:
        timeout = max(0.001, min(connect, deadline - time.monotonic()))
        host = parts.hostname
        port = parts.port or (443 if parts.scheme == "https" else 80)
        try:
            sock = socket.create_connection((host, port), timeout=timeout)
        except TimeoutError as exc:
            raise WireError(f"ConnectTimeout: {exc or 'timed out'}") from exc
        except OSError as exc:
            raise WireError(f"ConnectError: {exc}") from exc
        try:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            if parts.scheme == "https":
                context = self.ssl_context or ssl.create_default_context()
                sock = context.wrap_socket(sock, server_hostname=host)
        except TimeoutError as exc:
            sock.close()
            raise WireError(f"ConnectTimeout: TLS handshake: {exc or 'timed out'}") from exc
        except OSError as exc:  # ssl.SSLError is an OSError
            sock.close()
            raise WireError(f"ConnectError: {exc}") from exc
        conn = _Connection(sock, parts.netloc)
        with self._lock:
            self._all.append(conn)
        return conn

    def _discard(self, conn: _Connection) -> None:
        conn.close()
        with self._lock:
            if conn in self._all:
                self._all.remove(conn)

    def _exchange(self, conn: _Connection, key, method: str, payload: bytes, read: float,
                  deadline: float) -> Answer:
        """Send ``payload`` and read one answer on ``conn``; keep ``conn`` when the server allows.

        Raises one of ``_STALE`` when the connection was found closed before any answer began (the request
        may have been read: the caller doesn't send it again), else :class:`WireError`.
        """
        conn.receiver.read_timeout, conn.receiver.deadline = read, deadline
        try:
            conn.sock.settimeout(max(0.001, min(read, deadline - time.monotonic())))
            conn.sock.sendall(payload)
            status, version, headers = _read_head(conn.rfile)
        except _STALE:
            raise
        except (OSError, _Malformed) as exc:
            raise self._failed(conn, exc) from exc
        try:
            content, delimited = _read_body(conn.rfile, method, status, headers)
        except (OSError, _Malformed) as exc:
            raise self._failed(conn, exc) from exc
        tokens = {t.strip().lower() for t in headers.get("connection", "").split(",")}
        keep = delimited and ("keep-alive" in tokens if version == "HTTP/1.0" else "close" not in tokens)
        if keep:
            self._kept()[key] = conn
        else:
            self._discard(conn)
        return Answer(status, headers.get("content-type", ""), content)

    def _failed(self, conn: _Connection, exc: BaseException) -> WireError:
        self._discard(conn)
        if isinstance(exc, TimeoutError):
            return WireError(f"ReadTimeout: {exc or 'timed out'}")
        return WireError(f"{exc.__class__.__name__}: {exc}")


def _idle(sock: socket.socket) -> bool:
    """A kept connection may carry the next request: nothing is waiting on it (an idle HTTP connection
    with something to read was closed by the server, or holds bytes nobody asked for)."""
    try:
        readable, _, _ = select.select([sock], [], [], 0)
    except (OSError, ValueError):  # closed here, or a descriptor select can't watch
        return False
    return not readable


# The characters ``quote_plus`` leaves as they are; a space becomes ``+``, every other ASCII character %XX.
_FORM_SAFE = frozenset(b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_.-~")
_FORM_ASCII = {c: chr(c) if c in _FORM_SAFE else "+" if c == 32 else f"%{c:02X}" for c in range(128)}


def form_encode(data: Mapping[str, str]) -> str:
    """``urllib.parse.urlencode(data)``, the same text, for a mapping of text (or bytes) names and values.

    ``urlencode`` quotes one character at a time in Python: up to a tenth of the emulator's CPU per
    webhook (80 µs for a dial action's 21 fields). ASCII text, which is nearly every field a carrier sends, is
    quoted by one ``str.translate``; anything else goes through ``quote_plus`` as before.
    """
    return "&".join(f"{_form_quote(name)}={_form_quote(value)}" for name, value in data.items())


def _form_quote(text) -> str:
    if type(text) is str and text.isascii():
        return text.translate(_FORM_ASCII)
    return quote_plus(text if isinstance(text, str | bytes) else str(text))


def _request_bytes(method: str, target: str, host: str, headers: Mapping[str, str], body: bytes,
                   with_length: bool) -> bytes:
    """The whole request, head and body, ready for one ``sendall``."""
    lines = [f"{method} {target} HTTP/1.1", f"Host: {host}"]
    for name, value in headers.items():
        value = str(value)
        if "\r" in value or "\n" in value or "\r" in name or "\n" in name or ":" in name:
            raise WireError(f"InvalidHeader: {name!r} has a line break or a colon in its name or value")
        lines.append(f"{name}: {value}")
    if body or with_length:
        lines.append(f"Content-Length: {len(body)}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body


def _read_line(rfile) -> bytes:
    line = rfile.readline(_LINE_MAX + 1)
    if len(line) > _LINE_MAX:
        raise _Malformed("a status or header line longer than 64 KiB")
    return line


def _read_head(rfile) -> tuple[int, str, dict[str, str]]:
    """Status, HTTP version and headers (names lower-cased; a repeated one keeps its last value)."""
    while True:
        line = _read_line(rfile)
        if not line:
            raise _Disconnected("the server closed the connection without an answer")
        version, _, rest = line.decode("latin-1").strip().partition(" ")
        code = rest[:3]
        if version not in ("HTTP/1.1", "HTTP/1.0") or len(code) != 3 or not code.isdigit():
            raise _Malformed(f"not an HTTP/1.x status line: {line[:80]!r}")
        status = int(code)
        headers: dict[str, str] = {}
        for _ in range(_HEADERS_MAX + 1):
            line = _read_line(rfile)
            if line in (b"\r\n", b"\n"):
                break
            if not line:
                raise _Malformed("the answer ended inside its headers")
            name, colon, value = line.decode("latin-1").partition(":")
            if not colon:
                raise _Malformed(f"not a header line: {line[:80]!r}")
            headers[name.strip().lower()] = value.strip()
        else:
            raise _Malformed(f"more than {_HEADERS_MAX} header lines")
        if 100 <= status < 200:
            continue  # an interim answer (100 Continue …): the real one follows
        return status, version, headers


def _read_body(rfile, method: str, status: int, headers: dict[str, str]) -> tuple[bytes, bool]:
    """The answer's body, and whether its end was delimited (False: read until the server closed)."""
    if method == "HEAD" or status in _NO_BODY:
        return b"", True
    if "chunked" in headers.get("transfer-encoding", "").lower():
        chunks = []
        while True:
            size_line = _read_line(rfile).split(b";", 1)[0].strip()
            try:
                size = int(size_line, 16)
            except ValueError:
                raise _Malformed(f"a bad chunk size {size_line[:20]!r}") from None
            if size == 0:
                while _read_line(rfile) not in (b"\r\n", b"\n", b""):  # trailers
                    pass
                return b"".join(chunks), True
            chunk = rfile.read(size)
            if len(chunk) < size:
                raise _Malformed("the answer ended inside a chunk")
            chunks.append(chunk)
            rfile.readline(3)  # the chunk's CRLF
    length = headers.get("content-length")
    if length is not None:
        if not length.isdigit():
            raise _Malformed(f"a bad Content-Length {length[:20]!r}")
        content = rfile.read(int(length))
        if len(content) < int(length):
            raise _Malformed(f"the answer ended after {len(content)} of {length} bytes")
        return content, True
    return rfile.read(), False
