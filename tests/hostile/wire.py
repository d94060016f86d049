"""Raw HTTP/1.1 over a socket: byte-exact requests (malformed ones too) and a tolerant response reader."""

from __future__ import annotations

import socket
import time

from tests.hostile.checks import Answer
from tests.hostile.strategies import Probe


def request_bytes(probe: Probe, *, client: str = "", extra: tuple[tuple[str, str], ...] = ()) -> bytes:
    """``probe`` as bytes on the wire (``client``: the X-Forwarded-For the server trusts from loopback)."""
    lines = [f"{probe.method} {probe.target} HTTP/1.1".encode("latin-1", "replace")]
    if probe.host:
        lines.append(b"Host: " + probe.host.encode("latin-1", "replace"))
    if probe.content_type is not None:
        lines.append(b"Content-Type: " + probe.content_type.encode("latin-1", "replace"))
    if probe.body or probe.content_type is not None:
        lines.append(f"Content-Length: {len(probe.body)}".encode())
    for name, value in (*probe.headers, *extra, *((("X-Forwarded-For", client),) if client else ())):
        lines.append(name.encode() + b": " + value.encode("utf-8", "replace"))
    lines.append(b"Connection: close")
    return b"\r\n".join(lines) + b"\r\n\r\n" + probe.body


def read_answer(sock: socket.socket, timeout: float = 10.0) -> Answer:
    """Read until the server closes (sync workers always close) or ``timeout``; parse what came."""
    sock.settimeout(timeout)
    chunks: list[bytes] = []
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            chunk = sock.recv(65536)
            if not chunk:
                break
            chunks.append(chunk)
    except TimeoutError:
        pass
    except (ConnectionResetError, BrokenPipeError):
        pass
    return parse(b"".join(chunks))


def _dechunk(body: bytes) -> bytes:
    out, rest = b"", body
    while rest:
        size_line, _, rest = rest.partition(b"\r\n")
        try:
            size = int(size_line.split(b";")[0], 16)
        except ValueError:
            return body  # not chunked after all
        if size == 0:
            break
        out, rest = out + rest[:size], rest[size + 2:]
    return out


def parse(raw: bytes) -> Answer:
    """The final response in ``raw`` (interim 1xx responses, e.g. ``100 Continue``, are skipped)."""
    while True:
        if not raw:
            return Answer(None, b"", "")
        head, _, body = raw.partition(b"\r\n\r\n")
        lines = head.split(b"\r\n")
        parts = lines[0].split(b" ", 2)
        try:
            status = int(parts[1])
        except (IndexError, ValueError):
            return Answer(None, raw, "")
        if 100 <= status < 200 and body:
            raw = body
            continue
        break
    headers = {}
    for line in lines[1:]:
        name, _, value = line.partition(b":")
        headers[name.strip().lower().decode("latin-1")] = value.strip().decode("latin-1")
    if "chunked" in headers.get("transfer-encoding", "").lower():
        body = _dechunk(body)
    return Answer(status, body, headers.get("content-type", ""), headers.get("retry-after", ""))


def exchange(host: str, port: int, data: bytes, *, timeout: float = 10.0) -> Answer:
    """Send ``data`` and read the answer; a server that closes on us mid-send still gets its say."""
    with socket.create_connection((host, port), timeout=timeout) as sock:
        try:
            sock.sendall(data)
        except (BrokenPipeError, ConnectionResetError):
            pass  # refused before we finished sending (e.g. 413): read what it said
        return read_answer(sock, timeout)
