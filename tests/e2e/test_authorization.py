"""A server that needs authorization: a 424 that says so and passes on how to get it, and the
server's protocol era is not forgotten for the next, authorised caller."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from starlette.types import ASGIApp, Receive, Scope, Send

from tests.conftest import TEST_KEY
from tests.fixtures.mcp_servers import RequestLog, _counting, build_test_server
from tests.fixtures.servers import ServerThread

METADATA = "https://auth.example/.well-known/oauth-protected-resource/mcp"
CHALLENGE = f'Bearer resource_metadata="{METADATA}", scope="files:read files:write"'


def guarded(app: ASGIApp) -> ASGIApp:
    """401 with MCP's WWW-Authenticate challenge unless the bearer token is "good"."""

    async def wrapped(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            headers = dict(scope["headers"])
            if headers.get(b"authorization") != b"Bearer good":
                await send(
                    {
                        "type": "http.response.start",
                        "status": 401,
                        "headers": [
                            (b"www-authenticate", CHALLENGE.encode()),
                            (b"content-type", b"application/json"),
                        ],
                    }
                )
                await send({"type": "http.response.body", "body": b'{"error":"invalid_token"}'})
                return
        await app(scope, receive, send)

    return wrapped


@pytest.fixture(scope="module")
def protected() -> Iterator[tuple[str, RequestLog]]:
    log = RequestLog()
    thread = ServerThread(_counting(guarded(build_test_server().streamable_http_app()), log))
    thread.start()
    yield f"{thread.url}/mcp", log
    thread.stop()


def chat(server: ServerThread, url: str, **tool: Any) -> httpx.Response:
    mcp = {"type": "mcp", "server_label": "files", "server_url": url, **tool}
    return httpx.post(
        f"{server.url}/v1/chat/completions",
        json={
            "model": "scripted-a",
            "messages": [{"role": "user", "content": 'call files__echo {"text": "in"}'}],
            "tools": [mcp],
        },
        headers={"Authorization": f"Bearer {TEST_KEY}"},
        timeout=30,
    )


def test_a_401_says_how_to_authorize_and_keeps_the_era(
    toolbridge: ServerThread, protected: tuple[str, RequestLog]
) -> None:
    url, log = protected
    first = chat(toolbridge, url, authorization="good")  # learns the era
    assert first.status_code == 200, first.text
    log.reset()
    refused = chat(toolbridge, url)
    assert refused.status_code == 424, refused.text
    error = refused.json()["error"]
    assert error["code"] == "external_connector_error"
    assert "requires authorization" in error["message"]
    assert METADATA in error["message"] and "files:read files:write" in error["message"]
    assert error["www_authenticate"] == {
        "resource_metadata": METADATA,
        "scope": "files:read files:write",
    }
    assert log.http_requests == 1  # one try: no probing of other eras or transports
    log.reset()
    again = chat(toolbridge, url, authorization="good")
    assert again.status_code == 200
    assert log.methods["server/discover"] == 0  # the era was not forgotten
