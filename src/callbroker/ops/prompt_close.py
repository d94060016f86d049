"""Closing a client connection without waiting for the client to close its side.

gunicorn releases since April 2026 (its pull request #3590; 27.0.1 here) end every connection the
RFC 9112 §9.6 way (``gunicorn.util.close_graceful``): send FIN, then read until the client closes too
(up to 2 s or 64 KB), then close. It exists so that a
client whose request bytes are still unread in the kernel's buffer gets FIN and the whole answer, not
a reset (``close`` with unread data sends RST, which can cut off the answer's tail). But a sync worker
waits all that while for every request: one network round trip per webhook from a carrier across the
internet, and here, under load, the emulator's time to get round to closing (10 % fewer call
lifecycles per second, docs/benchmarks.md).

``close_promptly`` looks first: when nothing the client sent is left unread (a webhook's form is read
whole), ``close`` sends FIN and nothing is at risk, so it closes at once; otherwise, and on TLS sockets,
it closes the way gunicorn does. ``ops/gunicorn_conf.py`` installs it when gunicorn loads its settings,
before the workers are forked.

What is given up: bytes still on their way at the moment of the look (a client sending more after the
answer, or the rest of a body too large to have been read) meet a closed socket and the client gets a
reset, which may cut off its answer. Carriers send small forms that are read whole before the answer;
only an oversized or hostile request can lose its (error) answer this way.
"""

from __future__ import annotations

import socket
import ssl

from gunicorn import util as gunicorn_util

_graceful = getattr(gunicorn_util, "close_graceful", None)  # None: an older gunicorn, which closes plainly


def close_promptly(sock: socket.socket, timeout: float = 2.0, max_drain: int = 65536) -> None:
    """Close ``sock`` now when nothing it received is unread; else gunicorn's graceful close."""
    if isinstance(sock, ssl.SSLSocket):  # MSG_PEEK isn't allowed on TLS sockets
        return _graceful(sock, timeout, max_drain)
    try:
        sock.setblocking(False)
        try:
            unread = sock.recv(1, socket.MSG_PEEK)  # b"": the client has closed already
        except BlockingIOError:
            unread = b""
    except OSError:  # reset or gone: no answer left to protect
        unread = b""
    if unread:
        sock.setblocking(True)
        return _graceful(sock, timeout, max_drain)
    try:
        sock.close()
    except OSError:
        pass
    return None


def install() -> bool:
    """Make gunicorn's workers close with ``close_promptly`` (they call ``gunicorn.util.close_graceful``)."""
    if _graceful is None:
        return False
    gunicorn_util.close_graceful = close_promptly
    return True
