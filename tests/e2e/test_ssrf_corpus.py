"""A hostile corpus of server_urls, over both endpoints, against listeners that record every
connection: each is refused with a 400 before any packet, and no listener sees a connection.
Redirects to internal addresses and DNS answers that change between check and connect are
tried against a real server too.

Every host in the corpus is on this machine or unroutable: were the guard to let one through,
the connection would land on a recording listener, never on the internet.
"""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator
from typing import Any

import anyio
import httpx
import pytest

from tests.conftest import TEST_KEY
from tests.fixtures.mcp_servers import build_test_server
from tests.fixtures.servers import ServerThread


class RecordingListener:
    """Accepts TCP connections on one port on every local address (IPv4 and IPv6), recording
    each, and answers nothing."""

    def __init__(self) -> None:
        self.connections: list[tuple[str, int]] = []
        self._v4 = socket.create_server(("0.0.0.0", 0))
        self.port = self._v4.getsockname()[1]
        self._v6 = socket.create_server(("::", self.port), family=socket.AF_INET6)
        for sock in (self._v4, self._v6):
            threading.Thread(target=self._accept, args=(sock,), daemon=True).start()

    def _accept(self, sock: socket.socket) -> None:
        while True:
            try:
                conn, peer = sock.accept()
            except OSError:
                return
            self.connections.append(peer[:2])
            conn.close()

    def close(self) -> None:
        self._v4.close()
        self._v6.close()


@pytest.fixture(scope="module")
def listener() -> Iterator[RecordingListener]:
    recording = RecordingListener()
    yield recording
    recording.close()


def hostile_urls(port: int) -> list[str]:
    p = port
    hosts = [
        # IPv4 spelled every way a resolver accepts
        "127.0.0.1", "127.1", "127.0.1", "2130706433", "0x7f000001", "0x7f.0.0.1", "0177.0.0.1",
        "017700000001", "127.000.000.001", "0", "0.0.0.0", "127.255.255.254", "127.0.0.1.",
        "0177.1", "0x7f.1",
        # names for this machine
        "localhost", "LOCALHOST", "localhost.", "LocalHost.",
        # internal ranges (unroutable here: nothing would answer, the guard must still refuse)
        "10.0.0.1", "172.16.0.1", "192.168.0.1", "169.254.169.254", "100.64.0.1", "198.18.0.1",
        "192.0.0.1", "192.0.2.1", "224.0.0.1", "255.255.255.255", "240.0.0.1",
        # IPv6 loopback, unspecified, link-local (zone ids), ULA, multicast
        "[::1]", "[::]", "[0:0:0:0:0:0:0:1]", "[fe80::1]", "[fe80::1%25lo]", "[fe80::1%251]",
        "[fc00::1]", "[fd00::1]", "[fd00:ec2::254]", "[ff02::1]",
        # IPv6 that carries IPv4: mapped, compatible, translated, NAT64, 6to4, Teredo
        "[::ffff:127.0.0.1]", "[::ffff:7f00:1]", "[::127.0.0.1]", "[::ffff:0:7f00:1]",
        "[64:ff9b::7f00:1]", "[64:ff9b::127.0.0.1]", "[64:ff9b::a9fe:a9fe]",
        "[64:ff9b:1::7f00:1]", "[2002:7f00:1::1]", "[2002:a9fe:a9fe::]",
        "[2001:0:4136:e378:8000:63bf:80ff:fffe]", "[::ffff:a9fe:a9fe]", "[::ffff:10.0.0.1]",
        # IDN, full-width and ideographic forms that normalise to loopback
        "１２７．０．０．１", "ｌｏｃａｌｈｏｓｔ", "localhost。", "①②⑦.0.0.1", "127。0。0。1",
        # percent-encoding in the host
        "%31%32%37.0.0.1", "local%68ost", "127.0.0.1%00",
    ]  # fmt: skip
    urls = [f"{scheme}://{host}:{p}/mcp" for host in hosts for scheme in ("http", "https")]
    urls += [
        # default ports, no port
        "http://localhost/mcp", "https://[::1]/mcp", "http://169.254.169.254/latest/meta-data/",
        # credentials and parser confusion
        f"http://user:pass@127.0.0.1:{p}/mcp", f"http://user@localhost:{p}/mcp",
        f"http://example.invalid@127.0.0.1:{p}/mcp", f"http://127.0.0.1:{p}@example.invalid/",
        f"http://example.invalid\\@127.0.0.1:{p}/mcp", f"http://127.0.0.1:{p}\\@example.invalid/",
        f"http://127.0.0.1:{p}#@example.invalid/", f"http://127.0.0.1:{p}?@example.invalid/",
        f"http://127.0.0.1:{p}/mcp#@example.invalid", f"http:\\\\127.0.0.1:{p}/mcp",
        f"http://127.0.0.1:{p}:80/mcp", f"http://[::1]:{p}:80/mcp",
        # whitespace and control characters
        f" http://127.0.0.1:{p}/mcp", f"http://127.0.0.1:{p}/mcp\n", f"http://127.0.0.1\t:{p}/",
        f"http://127.0.0.1:{p}/mcp\r\nX-Injected: 1", f"http://local\x00host:{p}/",
        # ports
        "http://127.0.0.1:0/mcp", "http://example.invalid:0/mcp", "http://127.0.0.1:65536/mcp",
        "http://127.0.0.1:-1/mcp", "http://127.0.0.1:http/mcp",
        # schemes
        "file:///etc/passwd", f"gopher://127.0.0.1:{p}/_", f"ftp://127.0.0.1:{p}/",
        f"dict://127.0.0.1:{p}/", f"ws://127.0.0.1:{p}/mcp", f"HTTP://127.0.0.1:{p}/mcp",
        f"//127.0.0.1:{p}/mcp", f"127.0.0.1:{p}/mcp", "http:///mcp", "http://",
        "javascript:alert(1)", f"unix:///var/run/docker.sock:{p}",
    ]  # fmt: skip
    return urls


def post(server: ServerThread, endpoint: str, url: str) -> httpx.Response:
    tool = {"type": "mcp", "server_label": "x", "server_url": url, "require_approval": "never"}
    if endpoint == "chat":
        body: dict[str, Any] = {"messages": [{"role": "user", "content": "hi"}]}
        path = "/v1/chat/completions"
    else:
        body, path = {"input": "hi"}, "/v1/responses"
    return httpx.post(
        f"{server.url}{path}",
        timeout=60,
        headers={"Authorization": f"Bearer {TEST_KEY}"},
        json={"model": "scripted-a", "tools": [tool], **body},
    )


def test_every_hostile_url_is_refused_before_any_packet(
    toolbridge_factory: Any, listener: RecordingListener
) -> None:
    guarded = toolbridge_factory(ssrf_allowlist=[])
    urls = hostile_urls(listener.port)
    assert len(urls) >= 100
    refused = 0
    for endpoint in ("chat", "responses"):
        for url in urls:
            response = post(guarded, endpoint, url)
            assert response.status_code == 400, (endpoint, url, response.text)
            error = response.json()["error"]
            assert error["param"].startswith("tools[0]"), (url, error)
            for revealing in ("127.0.0.1", "169.254", "10.0.0"):
                if revealing not in url:
                    assert revealing not in error["message"], (url, error)
            refused += 1
    print(f"SSRF corpus: {len(urls)} URLs x 2 endpoints = {refused} probes, all refused")
    assert listener.connections == []


class Redirector:
    """An HTTP server on a loopback address that answers every request with a redirect."""

    def __init__(self, host: str, location: str) -> None:
        self._sock = socket.create_server((host, 0))
        self.url = f"http://{host}:{self._sock.getsockname()[1]}/mcp"
        self.requests = 0
        self._location = location
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self._sock.accept()
            except OSError:
                return
            with conn:
                conn.recv(65536)
                self.requests += 1
                conn.sendall(
                    f"HTTP/1.1 307 Temporary Redirect\r\nLocation: {self._location}\r\n"
                    "Content-Length: 0\r\nConnection: close\r\n\r\n".encode()
                )

    def close(self) -> None:
        self._sock.close()


@pytest.mark.parametrize("endpoint", ["chat", "responses"])
def test_a_redirect_to_an_internal_address_is_not_followed(
    toolbridge_factory: Any, listener: RecordingListener, endpoint: str
) -> None:
    """127.0.0.2 stands for an allowed server that turns hostile."""
    redirector = Redirector("127.0.0.2", f"http://127.0.0.1:{listener.port}/mcp")
    server = toolbridge_factory(ssrf_allowlist=["127.0.0.2/32"])
    try:
        response = post(server, endpoint, redirector.url)
    finally:
        redirector.close()
    assert redirector.requests >= 1  # the allowed server was reached
    assert response.status_code == 424, response.text
    assert listener.connections == []


@pytest.mark.parametrize("endpoint", ["chat", "responses"])
def test_a_dns_answer_that_changes_after_the_check_is_not_used(
    toolbridge_factory: Any, monkeypatch: pytest.MonkeyPatch, endpoint: str
) -> None:
    """A rebinding name: its first answer is 127.0.0.2 (allowlisted, a real MCP server), every
    later one 127.0.0.1, where a listener on the same port records connections. The check's
    answer is the only one used. Only the resolution is faked: no DNS server can be run for
    this process."""
    mcp = ServerThread(build_test_server().streamable_http_app(), host="127.0.0.2").start()
    trap = socket.create_server(("127.0.0.1", mcp.port))
    trapped: list[object] = []

    def record() -> None:
        try:
            trapped.append(trap.accept())
        except OSError:  # closed at the end of the test: nothing connected
            return

    threading.Thread(target=record, daemon=True).start()
    real_getaddrinfo = anyio.getaddrinfo
    answers: list[str] = []

    async def rebinding(host: Any, port: Any, **kwargs: Any) -> Any:
        if host == "localhost":
            answers.append("127.0.0.1" if answers else "127.0.0.2")
            return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", (answers[-1], port))]
        return await real_getaddrinfo(host, port, **kwargs)

    monkeypatch.setattr(anyio, "getaddrinfo", rebinding)
    server = toolbridge_factory(ssrf_allowlist=["127.0.0.2/32"], mcp_pool={"max_idle": 0})
    try:
        response = post(server, endpoint, f"http://localhost:{mcp.port}/mcp")
        assert response.status_code == 200, response.text
    finally:
        trap.close()
        mcp.stop()
    assert answers[0] == "127.0.0.2"  # the check asked, and was answered first
    assert trapped == []  # no connection went to a later answer
