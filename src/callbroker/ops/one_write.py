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
untouched. ``ops/gunicorn_conf.py`` installs it before the workers are forked.
"""

from __future__ import annotations

from gunicorn.http import wsgi as gunicorn_wsgi

#: Largest body piece joined to the head (a copy is made of it); bigger ones are sent as gunicorn sends them.
COALESCE_MAX = 64 * 1024

_gunicorn_write = gunicorn_wsgi.Response.write


class _Held:
    """Stands in for the socket while gunicorn writes an answer's head and first piece."""

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


def install() -> bool:
    """Make gunicorn's responses write head and first piece together (idempotent)."""
    if gunicorn_wsgi.Response.write is write_with_head:
        return False
    gunicorn_wsgi.Response.write = write_with_head
    return True
