"""An answer's head and body leave the server in one write (``ops/one_write.py``).

Each case is played twice through gunicorn's own response object, over a socket that records every
``sendall``: once with gunicorn's ``Response.write``, once with ``write_with_head``. The bytes on the
wire must be the same (but for the clock in the ``Date`` header); only the number of writes may differ,
and only where the head and a body piece can be joined.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from gunicorn.config import Config
from gunicorn.http import wsgi as gunicorn_wsgi
from gunicorn.http.parser import RequestParser

from callbroker.ops import one_write

REPO = Path(__file__).resolve().parents[2]
GUNICORN_WRITE = one_write._gunicorn_write


class RecordingSocket:
    def __init__(self, fail: bool = False) -> None:
        self.writes: list[bytes] = []
        self.fail = fail

    def sendall(self, data) -> None:
        if self.fail:
            raise BrokenPipeError(32, "Broken pipe")
        self.writes.append(bytes(data))


def _answer(write, request: bytes, status: str, headers: list[tuple[str, str]], pieces: list[bytes],
            sock: RecordingSocket | None = None) -> list[bytes]:
    """The writes a gunicorn response makes for ``pieces`` with ``write`` as its ``Response.write``."""
    cfg = Config()
    req = next(RequestParser(cfg, [request], ("127.0.0.1", 50000)))
    sock = sock or RecordingSocket()
    original = gunicorn_wsgi.Response.write
    gunicorn_wsgi.Response.write = write
    try:
        resp, _ = gunicorn_wsgi.create(req, sock, ("127.0.0.1", 50000), ("127.0.0.1", 8000), cfg)
        resp.start_response(status, headers)
        for piece in pieces:
            resp.write(piece)
        resp.close()
    finally:
        gunicorn_wsgi.Response.write = original
    return sock.writes


def _wire(writes: list[bytes]) -> bytes:
    return re.sub(rb"Date: [^\r]*\r\n", b"Date: -\r\n", b"".join(writes))


POST = b"POST /carriers/twilio/voice HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n"
TWIML = b'<?xml version="1.0" encoding="UTF-8"?><Response><Say>Hello</Say></Response>'
TWIML_HEADERS = [("Content-Type", "text/xml; charset=utf-8"), ("Content-Length", str(len(TWIML)))]


def test_a_webhook_answer_is_one_write_with_the_same_bytes():
    gunicorns = _answer(GUNICORN_WRITE, POST, "200 OK", TWIML_HEADERS, [TWIML])
    ours = _answer(one_write.write_with_head, POST, "200 OK", TWIML_HEADERS, [TWIML])
    assert len(gunicorns) == 2  # head, then body: what this module is about
    assert len(ours) == 1
    assert _wire(ours) == _wire(gunicorns)
    assert ours[0].startswith(b"HTTP/1.1 200 OK\r\n") and ours[0].endswith(b"\r\n\r\n" + TWIML)


@pytest.mark.parametrize("case", ["chunked", "too_big", "head_request", "cut_by_length", "several_pieces",
                                  "empty_body"])
def test_every_other_answer_leaves_as_gunicorn_sends_it(case):
    request, headers, pieces = POST, TWIML_HEADERS, [TWIML]
    if case == "chunked":  # no Content-Length on HTTP/1.1: gunicorn frames the body in chunks
        headers, pieces = [("Content-Type", "text/plain")], [b"first", b"second"]
    elif case == "too_big":
        big = b"x" * (one_write.COALESCE_MAX + 1)
        headers, pieces = [("Content-Length", str(len(big)))], [big]
    elif case == "head_request":  # no body bytes may follow the head
        request = b"HEAD / HTTP/1.1\r\nHost: x\r\n\r\n"
    elif case == "cut_by_length":  # an application writing more than it announced: gunicorn cuts it
        headers = [("Content-Length", "5")]
    elif case == "several_pieces":
        body = [b"<Response>", b"<Hangup/>", b"</Response>"]
        headers, pieces = [("Content-Length", str(sum(map(len, body))))], body
    elif case == "empty_body":
        headers, pieces = [("Content-Length", "0")], []
    gunicorns = _answer(GUNICORN_WRITE, request, "200 OK", headers, pieces)
    ours = _answer(one_write.write_with_head, request, "200 OK", headers, pieces)
    assert _wire(ours) == _wire(gunicorns)
    expected_writes = {
        "chunked": len(gunicorns),        # nothing joined
        "too_big": 2,                      # head, then the big body as it is
        "head_request": 1,                 # the head alone
        "cut_by_length": 1,                # head and the five bytes gunicorn keeps
        "several_pieces": len(pieces),     # head joined to the first piece only
        "empty_body": 1,                   # the head, sent when the response closes
    }[case]
    assert len(ours) == expected_writes
    if case == "cut_by_length":
        assert ours[0].endswith(b"\r\n\r\n" + TWIML[:5])
    if case == "head_request":
        assert ours[0].endswith(b"\r\n\r\n")


def test_a_failed_write_raises_and_leaves_the_response_on_its_socket():
    cfg = Config()
    req = next(RequestParser(cfg, [POST], ("127.0.0.1", 50000)))
    sock = RecordingSocket(fail=True)
    resp, _ = gunicorn_wsgi.create(req, sock, ("127.0.0.1", 50000), ("127.0.0.1", 8000), cfg)
    resp.start_response("200 OK", TWIML_HEADERS)
    with pytest.raises(BrokenPipeError):
        one_write.write_with_head(resp, TWIML)
    assert resp.sock is sock  # gunicorn closes this socket next: it must be the real one


def test_the_gunicorn_settings_module_installs_it(tmp_path):
    # A fresh interpreter: importing the settings module sets PROMETHEUS_MULTIPROC_DIR for its process.
    probe = ("import json; from gunicorn.http import wsgi; "
             "from callbroker.ops import gunicorn_conf, one_write; "
             "print(json.dumps({'installed': wsgi.Response.write is one_write.write_with_head, "
             "'again': one_write.install()}))")
    env = {**os.environ, "CALLBROKER_DATA_DIR": str(tmp_path),
           "PROMETHEUS_MULTIPROC_DIR": str(tmp_path / "prom")}
    result = subprocess.run([sys.executable, "-c", probe], env=env, cwd=REPO, capture_output=True, text=True,
                            timeout=120, check=True)
    seen = json.loads(result.stdout.strip().splitlines()[-1])
    assert seen == {"installed": True, "again": False}


def test_a_gunicorn_whose_write_works_otherwise_is_left_as_it_is(monkeypatch):
    def sends_directly(self, arg):  # a gunicorn writing its body with a socket method the holder lacks
        self.send_headers()
        self.sock.send(arg)

    monkeypatch.setattr(one_write, "_gunicorn_write", sends_directly)
    monkeypatch.setattr(gunicorn_wsgi.Response, "write", sends_directly)
    assert one_write.agrees_with_gunicorn() is False
    assert one_write.install() is False
    assert gunicorn_wsgi.Response.write is sends_directly


def test_this_gunicorn_agrees():
    assert one_write.agrees_with_gunicorn() is True

