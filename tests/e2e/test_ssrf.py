"""A caller's server_url cannot reach into the network toolbridge runs in."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from tests.conftest import TEST_KEY
from tests.fixtures.mcp_servers import RunningMcpServer
from tests.fixtures.servers import ServerThread


@pytest.fixture(scope="module")
def guarded(toolbridge_factory: Any) -> ServerThread:
    """A toolbridge with the default policy: nothing internal allowlisted."""
    return toolbridge_factory(ssrf_allowlist=[])


def post(server: ServerThread, url: str) -> httpx.Response:
    return httpx.post(
        f"{server.url}/v1/chat/completions",
        timeout=30,
        headers={"Authorization": f"Bearer {TEST_KEY}"},
        json={
            "model": "scripted-a",
            "messages": [{"role": "user", "content": "hi"}],
            "tools": [{"type": "mcp", "server_label": "x", "server_url": url}],
        },
    )


def test_internal_targets_are_refused_before_any_packet(
    guarded: ServerThread, mcp_server: RunningMcpServer
) -> None:
    port = mcp_server.url.split(":")[2].split("/")[0]
    for url in (
        mcp_server.url,
        f"http://localhost:{port}/mcp",
        f"http://[::1]:{port}/mcp",
        f"http://[::ffff:127.0.0.1]:{port}/mcp",
        "http://169.254.169.254/latest",
        "http://10.0.0.1/mcp",
        "http://100.64.1.1/mcp",
    ):
        response = post(guarded, url)
        assert response.status_code == 400, url
        assert response.json()["error"]["param"] == "tools[0].server_url"
    assert mcp_server.log.http_requests == 0


def test_registered_servers_are_trusted(guarded: ServerThread) -> None:
    response = httpx.post(
        f"{guarded.url}/v1/chat/completions",
        timeout=30,
        headers={"Authorization": f"Bearer {TEST_KEY}"},
        json={
            "model": "scripted-a",
            "messages": [{"role": "user", "content": "call calc__echo {}"}],
            "tools": [{"type": "mcp", "server_label": "calc"}],
        },
    )
    assert response.status_code == 200


def test_allowlisted_hostname_is_pinned_and_keeps_its_host_header(
    toolbridge_factory: Any, mcp_server: RunningMcpServer
) -> None:
    server = toolbridge_factory(ssrf_allowlist=["localhost"])
    port = mcp_server.url.split(":")[2].split("/")[0]
    response = post(server, f"http://localhost:{port}/mcp")
    assert response.status_code == 200
    assert mcp_server.log.headers[0]["host"] == f"localhost:{port}"


def test_key_url_patterns_are_enforced(
    toolbridge_factory: Any, mcp_server: RunningMcpServer
) -> None:
    keys = [{"id": "narrow", "key": "sk-narrow", "server_urls": ["https://mcp.example.com/*"]}]
    server = toolbridge_factory(api_keys=keys)
    response = httpx.post(
        f"{server.url}/v1/chat/completions",
        timeout=30,
        headers={"Authorization": "Bearer sk-narrow"},
        json={
            "model": "scripted-a",
            "messages": [{"role": "user", "content": "x"}],
            "tools": [{"type": "mcp", "server_label": "x", "server_url": mcp_server.url}],
        },
    )
    assert response.status_code == 403


def test_a_url_pattern_is_not_fooled_by_the_query(
    toolbridge_factory: Any, mcp_server: RunningMcpServer
) -> None:
    """``http://*.example.com/*`` once matched the whole URL string, so ``*`` crossed into the
    query: a loopback server was served. The parsed host is what is matched now."""
    keys = [{"id": "glob", "key": "sk-glob", "server_urls": ["http://*.example.com/*"]}]
    server = toolbridge_factory(api_keys=keys, ssrf_allowlist=["127.0.0.1/32"])
    response = httpx.post(
        f"{server.url}/v1/chat/completions",
        timeout=30,
        headers={"Authorization": "Bearer sk-glob"},
        json={
            "model": "scripted-a",
            "messages": [{"role": "user", "content": "x"}],
            "tools": [
                {
                    "type": "mcp",
                    "server_label": "x",
                    "server_url": f"{mcp_server.url}?x=.example.com/",
                }
            ],
        },
    )
    assert response.status_code == 403, response.text
    assert response.json()["error"]["param"] == "tools[0].server_url"
