"""The emulator's HTTP client (``callbroker.sim.wire``) against small real servers on loopback."""

from __future__ import annotations

import os
import socket
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qsl, urlencode

import pytest
from hypothesis import given
from hypothesis import strategies as st

from callbroker.sim.wire import Wire, WireError, form_encode

texts = st.text(st.characters(blacklist_categories=("Cs",)), max_size=30)


@given(st.dictionaries(texts, texts | st.binary(max_size=10) | st.integers(), max_size=25))
def test_form_encode_is_urlencode(fields):
    assert form_encode(fields) == urlencode(fields)


def test_form_encode_quotes_what_a_webhook_holds():
    fields = {"From": "+1 512-555 0100", "Url": "https://x.example/a?b=c&d=e#f", "City": "SAN JOSÉ", "Empty": ""}
    assert form_encode(fields) == ("From=%2B1+512-555+0100&Url=https%3A%2F%2Fx.example%2Fa%3Fb%3Dc%26d%3De%23f"
                                   "&City=SAN+JOS%C3%89&Empty=")


class CountingServer:
    """Answers every request with its body echoed; counts connections and requests; can drop connections."""

    def __init__(self, *, keep_alive: bool = True, delay: float = 0.0, content_type: str = "text/plain",
                 suffix: str = "") -> None:
        self.connections = 0
        self.requests: list[tuple[str, str, dict[str, str], dict[str, str]]] = []
        self._sockets: list[socket.socket] = []
        self._lock = threading.Lock()
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1" if keep_alive else "HTTP/1.0"

            def log_message(self, *args) -> None:
                pass

            def setup(self) -> None:
                super().setup()
                self.request.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                with server._lock:
                    server.connections += 1
                    server._sockets.append(self.request)

            def _answer(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length).decode() if length else ""
                with server._lock:
                    server.requests.append((self.command, self.path, dict(parse_qsl(body)),
                                            {k.lower(): v for k, v in self.headers.items()}))
                if delay:
                    time.sleep(delay)
                out = f"{self.command} {self.path} {body}{suffix}".encode("latin-1")
                try:
                    self.send_response(200)
                    self.send_header("Content-Type", content_type)
                    self.send_header("Content-Length", str(len(out)))
                    self.end_headers()
                    self.wfile.write(out)
                except OSError:
                    pass  # the client gave up (timeout tests)

            do_GET = do_POST = _answer

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def drop_connections(self) -> None:
        """Close every open connection from the server's side, as a server does with idle keep-alives."""
        with self._lock:
            sockets, self._sockets = self._sockets, []
        for sock in sockets:
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
        time.sleep(0.05)  # let the FINs arrive

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def make_server():
    servers: list[CountingServer] = []

    def make(**kwargs) -> CountingServer:
        servers.append(CountingServer(**kwargs))
        return servers[-1]

    yield make
    for server in servers:
        server.close()


def test_a_form_post_is_sent_with_the_carriers_headers(make_server):
    server = make_server()
    wire = Wire({"User-Agent": "TwilioProxy/1.1"})
    answer = wire.request("POST", server.url + "/voice?x=1", data={"CallSid": "CA1", "From": "+1 512"},
                          headers={"X-Twilio-Signature": "sig"})
    method, path, form, headers = server.requests[0]
    assert (answer.status, method, path, form) == (200, "POST", "/voice?x=1", {"CallSid": "CA1", "From": "+1 512"})
    assert headers["user-agent"] == "TwilioProxy/1.1"
    assert headers["x-twilio-signature"] == "sig"
    assert headers["content-type"] == "application/x-www-form-urlencoded"
    assert answer.text == "POST /voice?x=1 CallSid=CA1&From=%2B1+512"
    wire.close()


def test_one_connection_is_reused_while_the_server_keeps_it_open(make_server):
    server = make_server()
    wire = Wire()
    for i in range(5):
        assert wire.request("GET", f"{server.url}/n{i}").status == 200
    assert (server.connections, len(server.requests)) == (1, 5)
    wire.close()


def test_a_server_that_closes_after_each_answer_gets_a_new_connection_each_time(make_server):
    server = make_server(keep_alive=False)
    wire = Wire()
    for i in range(3):
        assert wire.request("POST", f"{server.url}/n{i}", data={"i": str(i)}).status == 200
    assert (server.connections, len(server.requests)) == (3, 3)


def test_a_kept_connection_the_server_dropped_is_replaced_and_the_request_sent_once(make_server):
    server = make_server()
    wire = Wire()
    assert wire.request("GET", server.url + "/first").status == 200
    server.drop_connections()
    answer = wire.request("POST", server.url + "/second", data={"CallSid": "CA2"})
    assert answer.status == 200 and answer.text.startswith("POST /second")
    assert [path for _, path, _, _ in server.requests] == ["/first", "/second"]
    assert server.connections == 2


def test_threads_keep_their_own_connections(make_server):
    server = make_server()
    wire = Wire()
    barrier = threading.Barrier(3)
    failures: list[BaseException] = []

    def work() -> None:
        try:
            barrier.wait()
            for i in range(4):
                wire.request("GET", f"{server.url}/t{i}")
        except BaseException as exc:  # noqa: BLE001 - reported below
            failures.append(exc)

    threads = [threading.Thread(target=work) for _ in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not failures
    assert (server.connections, len(server.requests)) == (3, 12)


def test_a_slow_answer_is_a_read_timeout(make_server):
    server = make_server(delay=1.0)
    with pytest.raises(WireError, match="^ReadTimeout"):
        Wire().request("GET", server.url + "/slow", read=0.2, total=5)


def test_the_total_timeout_bounds_the_read_timeout(make_server):
    server = make_server(delay=1.0)
    with pytest.raises(WireError, match="^ReadTimeout"):
        Wire().request("GET", server.url + "/slow", read=5, total=0.2)


def test_nobody_listening_is_a_connect_error():
    with socket.socket() as probe:  # a port that was free a moment ago
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    with pytest.raises(WireError, match="^ConnectError"):
        Wire().request("GET", f"http://127.0.0.1:{port}/", connect=1)


def test_only_http_urls_are_sent():
    with pytest.raises(WireError, match="UnsupportedProtocol"):
        Wire().request("GET", "ftp://127.0.0.1/file")


def test_the_answer_is_decoded_with_its_charset(make_server):
    latin = make_server(content_type="text/plain; charset=iso-8859-1", suffix=" Zoë")  # sent as one byte, 0xE9
    assert Wire().request("GET", latin.url + "/a").text == "GET /a  Zoë"
    unknown = make_server(content_type="text/xml; charset=no-such-charset", suffix=" Zoë")
    assert Wire().request("GET", unknown.url + "/b").text == "GET /b  Zo\ufffd"  # read as UTF-8


def test_a_forked_child_opens_its_own_connection_and_the_parent_keeps_its_own(make_server):
    server = make_server()
    wire = Wire()
    assert wire.request("GET", server.url + "/parent-1").status == 200
    pid = os.fork()
    if pid == 0:  # the child: a request of its own, on a connection of its own
        ok = wire.request("GET", server.url + "/child").text.startswith("GET /child")
        os._exit(0 if ok else 1)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    assert wire.request("GET", server.url + "/parent-2").text.startswith("GET /parent-2")
    assert [path for _, path, _, _ in server.requests] == ["/parent-1", "/child", "/parent-2"]
    assert server.connections == 2  # the parent's one, kept throughout, and the child's


class RawServer:
    """Answers each connection's first request with the given bytes, then closes it (or keeps it, once more)."""

    def __init__(self, *answers: bytes) -> None:
        self.answers = list(answers)
        self.received: list[bytes] = []
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self.listener.getsockname()[1]}"
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        with self.listener:
            conn, _ = self.listener.accept()
            with conn:
                for answer in self.answers:
                    data = b""
                    while b"\r\n\r\n" not in data:
                        data += conn.recv(65536)
                    head, _, body = data.partition(b"\r\n\r\n")
                    length = next((int(line.split(b":")[1]) for line in head.split(b"\r\n")
                                   if line.lower().startswith(b"content-length:")), 0)
                    while len(body) < length:
                        body += conn.recv(65536)
                    self.received.append(head + b"\r\n\r\n" + body)
                    conn.sendall(answer)


def test_a_chunked_answer_is_read_whole_and_the_connection_kept():
    server = RawServer(b"HTTP/1.1 200 OK\r\nContent-Type: text/xml\r\nTransfer-Encoding: chunked\r\n\r\n"
                       b"5\r\n<Resp\r\n8;ext=1\r\nonse/>..\r\n0\r\nX-Trailer: 1\r\n\r\n",
                       b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
    wire = Wire()
    answer = wire.request("POST", server.url + "/a", data={"CallSid": "CA1"})
    assert (answer.status, answer.content_type, answer.content) == (200, "text/xml", b"<Response/>..")
    assert wire.request("GET", server.url + "/b").content == b"ok"  # same connection: the server accepts once
    assert server.received[0].startswith(b"POST /a HTTP/1.1\r\nHost: 127.0.0.1:")
    assert server.received[0].endswith(b"Content-Length: 11\r\n\r\nCallSid=CA1")
    wire.close()


def test_an_interim_answer_is_skipped_and_an_http_1_0_keep_alive_kept():
    server = RawServer(b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.0 201 Created\r\nConnection: Keep-Alive\r\n"
                       b"Content-Length: 3\r\n\r\nnew",
                       b"HTTP/1.0 204 No Content\r\nConnection: keep-alive\r\n\r\n")
    wire = Wire()
    assert (wire.request("GET", server.url + "/a").status, server.received[0][:6]) == (201, b"GET /a")
    assert wire.request("GET", server.url + "/b")[:3] == (204, "", b"")
    wire.close()


def test_an_answer_without_length_is_read_until_the_server_closes():
    server = RawServer(b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n\r\nuntil the end")
    assert Wire().request("GET", server.url + "/a").content == b"until the end"


@pytest.mark.parametrize(("answer", "error"), [
    (b"HTTP/2 200\r\n\r\n", "not an HTTP/1.x status line"),
    (b"HTTP/1.1 200 OK\r\nno colon here\r\n\r\n", "not a header line"),
    (b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nshort", "ended after 5 of 10 bytes"),
    (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n", "bad chunk size"),
    (b"HTTP/1.1 200 OK\r\nContent-Length: -1\r\n\r\n", "bad Content-Length"),
])
def test_a_malformed_answer_is_a_wire_error_naming_the_problem(answer, error):
    server = RawServer(answer)
    with pytest.raises(WireError, match=error):
        Wire().request("GET", server.url + "/a", read=2, total=2)


def test_a_header_with_a_line_break_is_refused_before_anything_is_sent():
    with pytest.raises(WireError, match="InvalidHeader"):
        Wire().request("GET", "http://127.0.0.1:9/", headers={"X-Twilio-Signature": "a\r\nInjected: 1"})


class ScriptedServer:
    """Every connection: ``script(conn, n, path)`` answers its n-th request (0-based); returns False to close."""

    def __init__(self, script) -> None:
        self.paths: list[str] = []
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self.listener.getsockname()[1]}"
        self.script = script
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self.listener.accept()
            except OSError:
                return
            threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    def _serve(self, conn: socket.socket) -> None:
        with conn:
            for n in range(100):
                data = b""
                while b"\r\n\r\n" not in data:
                    chunk = conn.recv(65536)
                    if not chunk:
                        return
                    data += chunk
                self.paths.append(data.split(b" ", 2)[1].decode())
                if not self.script(conn, n, self.paths[-1]):
                    return

    def close(self) -> None:
        self.listener.close()


def test_an_answer_trickling_in_fails_when_the_total_timeout_runs_out():
    def trickle(conn, n, path):
        try:
            conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 40\r\n\r\n")
            for _ in range(40):  # a byte every 0.1 s: each wait is well inside the read timeout
                time.sleep(0.1)
                conn.sendall(b"x")
        except OSError:
            pass  # the client gave up
        return False

    server = ScriptedServer(trickle)
    began = time.monotonic()
    with pytest.raises(WireError, match="ReadTimeout"):
        Wire().request("GET", server.url + "/slow", read=1.0, total=0.5)
    assert time.monotonic() - began < 1.5  # not the 4 s the trickle takes
    server.close()


def test_a_request_the_server_read_before_dropping_the_kept_connection_is_not_sent_again():
    def once_then_drop(conn, n, path):
        if n == 0:
            conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
            return True
        return False  # reads the next request, then closes without an answer (a worker that died)

    server = ScriptedServer(once_then_drop)
    wire = Wire()
    assert wire.request("GET", server.url + "/first").content == b"ok"
    with pytest.raises(WireError, match="RemoteProtocolError"):
        wire.request("POST", server.url + "/second", data={"CallSid": "CA2"})
    time.sleep(0.1)
    assert server.paths == ["/first", "/second"]  # delivered once: the carrier's retry decides the rest
    wire.close()
    server.close()
