"""An answer's head and body sent in one write.

gunicorn's ``Response.write`` sends the status line and headers with one ``sendall`` and the body with a
second. Every webhook answer (a TwiML document of a few hundred bytes, its ``Content-Length`` known) is
then two TCP segments: the client is woken for the head and again for the body, and each segment is
sent, delivered and acknowledged on its own. Over loopback the kernel does the receiving side's work in
the sender's system call, so a sync worker paid for both deliveries.

``write_with_head`` lets gunicorn do all its own bookkeeping (status line, default headers, the
``Content-Length`` cut, the no-body statuses) into a holder instead of the socket, then sends what it
wrote with a single ``sendall``. Only the first write of an answer that is not chunked and whose piece
is at most ``COALESCE_MAX`` bytes is joined; anything else goes through gunicorn's own ``write``
untouched. ``ops/gunicorn_conf.py`` installs it before the workers are forked, after checking that this
gunicorn's response, written through the holder, puts the very bytes on the wire that its own ``write``
does (a gunicorn whose ``write`` works differently is left as it is).
"""

from __future__ import annotations

import logging
import re

from gunicorn.http import wsgi as gunicorn_wsgi

log = logging.getLogger(__name__)

#: Largest body piece joined to the head (a copy is made of it); bigger ones are sent as gunicorn sends them.
COALESCE_MAX = 64 * 1024

_gunicorn_write = gunicorn_wsgi.Response.write


class _Held:
    """Stands in for the socket and keeps what gunicorn writes to it."""

    __slots__ = ("parts",)

    def __init__(self) -> None:
        self.parts: list[bytes] = []

    def sendall(self, data) -> None:
        self.parts.append(data)


def write_with_head(self, arg) -> None:
    """gunicorn's ``Response.write``, the head and the first body piece in one ``sendall``."""
    if self.headers_sent or self.chunked or not isinstance(arg, bytes) or len(arg) > COALESCE_MAX:
        return _gunicorn_write(self, arg)
    sock, held = self.sock, _Held()
    self.sock = held
    try:
        _gunicorn_write(self, arg)
    finally:
        self.sock = sock
    sock.sendall(b"".join(held.parts))
    return None


def _wire_of(write) -> list[bytes]:
    """The writes a gunicorn response to a small POST makes with ``write`` as its ``Response.write``."""
    from gunicorn.config import Config
    from gunicorn.http.parser import RequestParser

    cfg = Config()
    request = b"POST /x HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n"
    req = next(RequestParser(cfg, [request], ("127.0.0.1", 1)))
    sock = _Held()  # records what would have gone to the socket
    resp, _ = gunicorn_wsgi.create(req, sock, ("127.0.0.1", 1), ("127.0.0.1", 2), cfg)
    resp.start_response("200 OK", [("Content-Type", "text/xml"), ("Content-Length", "11")])
    write(resp, b"<Response/>")
    resp.close()
    return sock.parts


def _clockless(writes: list[bytes]) -> bytes:
    return re.sub(rb"Date: [^\r]*\r\n", b"", b"".join(writes))


def agrees_with_gunicorn() -> bool:
    """True when this gunicorn's answer leaves ``write_with_head`` as one write of the bytes its own
    ``write`` sends in two (the ``Date`` header aside)."""
    try:
        theirs, ours = _wire_of(_gunicorn_write), _wire_of(write_with_head)
    except Exception:  # any surprise means: leave gunicorn as it is
        log.warning("gunicorn's response can't be written through a holder: answers keep two writes",
                    exc_info=True)
        return False
    same = len(ours) == 1 and _clockless(ours) == _clockless(theirs)
    if not same:
        log.warning("gunicorn's response writes differently than expected: answers keep two writes")
    return same


def install() -> bool:
    """Make gunicorn's responses write head and first piece together.

    False when installed already, or when this gunicorn's response doesn't agree (``agrees_with_gunicorn``).
    """
    if gunicorn_wsgi.Response.write is write_with_head or not agrees_with_gunicorn():
        return False
    gunicorn_wsgi.Response.write = write_with_head
    return True
