"""TLS to a pinned address, proven against a real TLS MCP server with a CA the test makes; and
headers a caller cannot send, refused as the caller's mistake before anything is sent."""

from __future__ import annotations

import ssl
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
import trustme

from tests.conftest import TEST_KEY
from tests.fixtures.mcp_servers import RunningMcpServer, build_test_server
from tests.fixtures.servers import ServerThread


@dataclass
class TlsServer:
    port: int
    ca_file: Path
    server_names: list[str | None] = field(default_factory=list)
    """The SNI of every TLS handshake the server saw."""


@pytest.fixture(scope="module")
def tls_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TlsServer]:
    """The test MCP server over https, with a certificate for ``localhost`` only."""
    folder = tmp_path_factory.mktemp("tls")
    ca = trustme.CA()
    ca.cert_pem.write_to_path(str(folder / "ca.pem"))
    ca.issue_cert("localhost").private_key_and_cert_chain_pem.write_to_path(
        str(folder / "server.pem")
    )
    thread = ServerThread(
        build_test_server().streamable_http_app(), ssl_certfile=str(folder / "server.pem")
    )
    found = TlsServer(port=thread.port, ca_file=folder / "ca.pem")
    config = thread.server.config
    config.load()
    assert isinstance(config.ssl, ssl.SSLContext)
    config.ssl.sni_callback = lambda _sock, name, _ctx: found.server_names.append(name)
    thread.start()
    yield found
    thread.stop()


def call(server: ServerThread, url: str, **tool: Any) -> httpx.Response:
    mcp = {"type": "mcp", "server_label": "tls", "server_url": url, **tool}
    return httpx.post(
        f"{server.url}/v1/chat/completions",
        timeout=60,
        headers={"Authorization": f"Bearer {TEST_KEY}"},
        json={
            "model": "scripted-a",
            "messages": [{"role": "user", "content": 'call tls__echo {"text": "over tls"}'}],
            "tools": [mcp],
        },
    )


def test_tls_verifies_the_hostname_sends_sni_and_never_reuses_across_names(
    toolbridge_factory: Any, tls_server: TlsServer
) -> None:
    server = toolbridge_factory(
        mcp_ca_file=tls_server.ca_file, ssrf_allowlist=["127.0.0.1/32", "localhost"]
    )
    good = call(server, f"https://localhost:{tls_server.port}/mcp")
    assert good.status_code == 200, good.text
    answer = good.json()["choices"][0]["message"]["content"]
    assert answer.startswith("done: tls__echo=") and "over tls" in answer
    assert tls_server.server_names and set(tls_server.server_names) == {"localhost"}
    # The same address under a name the certificate does not cover: a connection validated
    # for "localhost" is pooled to it right now, and must not be reused.
    wrong = call(server, f"https://127.0.0.1:{tls_server.port}/mcp")
    assert wrong.status_code == 424, wrong.text
    assert wrong.json()["error"]["code"] == "external_connector_error"


def test_a_private_ca_is_trusted_only_when_configured(
    toolbridge_factory: Any, tls_server: TlsServer
) -> None:
    server = toolbridge_factory(ssrf_allowlist=["localhost"])
    refused = call(server, f"https://localhost:{tls_server.port}/mcp")
    assert refused.status_code == 424, refused.text


BAD_HEADERS = [
    ({"X-Test": "a\r\nX-Injected: 1"}, "tools[0].headers.X-Test"),
    ({"X-Test": "line\nbreak"}, "tools[0].headers.X-Test"),
    ({"X-Test": "nul\x00"}, "tools[0].headers.X-Test"),
    ({"X-Test": "check ✓"}, "tools[0].headers.X-Test"),
    ({"X Test": "v"}, "tools[0].headers.X Test"),
    ({"X-Test:": "v"}, "tools[0].headers.X-Test:"),
    ({"": "v"}, "tools[0].headers."),
    ({"Host": "evil.example"}, "tools[0].headers.Host"),
    ({"content-length": "0"}, "tools[0].headers.content-length"),
    ({"Transfer-Encoding": "chunked"}, "tools[0].headers.Transfer-Encoding"),
    ({"Connection": "close"}, "tools[0].headers.Connection"),
    ({"MCP-Protocol-Version": "2024-11-05"}, "tools[0].headers.MCP-Protocol-Version"),
    ({"Mcp-Session-Id": "stolen"}, "tools[0].headers.Mcp-Session-Id"),
]


@pytest.mark.parametrize("endpoint", ["/v1/chat/completions", "/v1/responses"])
def test_headers_that_cannot_be_sent_are_the_callers_mistake(
    toolbridge: ServerThread, mcp_server: RunningMcpServer, endpoint: str
) -> None:
    cases: list[tuple[dict[str, Any], str]] = [
        ({"headers": headers}, param) for headers, param in BAD_HEADERS
    ]
    cases.append(({"authorization": "token\r\nX-Injected: 1"}, "tools[0].authorization"))
    cases.append(({"authorization": "tökén ✓"}, "tools[0].authorization"))
    for extra, param in cases:
        for label, where in (("calc", {}), ("byurl", {"server_url": mcp_server.url})):
            tool = {"type": "mcp", "server_label": label, "require_approval": "never"}
            body: dict[str, Any] = {"model": "scripted-a", "tools": [{**tool, **where, **extra}]}
            if endpoint == "/v1/responses":
                body["input"] = "hi"
            else:
                body["messages"] = [{"role": "user", "content": "hi"}]
            response = httpx.post(
                f"{toolbridge.url}{endpoint}",
                json=body,
                timeout=30,
                headers={"Authorization": f"Bearer {TEST_KEY}"},
            )
            assert response.status_code == 400, (extra, response.text)
            error = response.json()["error"]
            assert error["param"] == param and error["type"] == "invalid_request_error"
    assert mcp_server.log.http_requests == 0  # nothing was sent


def test_a_caller_adds_headers_to_a_registered_server_but_replaces_none(
    toolbridge_factory: Any, mcp_server: RunningMcpServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("OPERATOR_TOKEN", "operator-secret")
    registered = [
        {
            "label": "guarded",
            "url": mcp_server.url,
            "headers_from_env": {"Authorization": "OPERATOR_TOKEN", "X-Team": "OPERATOR_TOKEN"},
        }
    ]
    server = toolbridge_factory(mcp_servers=registered)
    tool = {"type": "mcp", "server_label": "guarded"}

    def chat(extra: dict[str, Any]) -> httpx.Response:
        return httpx.post(
            f"{server.url}/v1/chat/completions",
            json={
                "model": "scripted-a",
                "tools": [{**tool, **extra}],
                "messages": [{"role": "user", "content": 'call guarded__echo {"text": "hi"}'}],
            },
            timeout=30,
            headers={"Authorization": f"Bearer {TEST_KEY}"},
        )

    mcp_server.log.reset()
    refused = [
        ({"authorization": "caller-token"}, "tools[0].authorization"),
        ({"headers": {"x-team": "caller"}}, "tools[0].headers.x-team"),
    ]
    for extra, param in refused:
        response = chat(extra)
        assert response.status_code == 400 and response.json()["error"]["param"] == param
        assert "configured for MCP server 'guarded'" in response.json()["error"]["message"]
    assert mcp_server.log.http_requests == 0
    added = chat({"headers": {"X-Trace": "t-1"}})
    assert added.status_code == 200, added.text
    sent = mcp_server.log.headers[-1]
    assert sent["authorization"] == "operator-secret" and sent["x-trace"] == "t-1"
