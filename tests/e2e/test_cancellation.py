"""A client that hangs up cancels its run, and the MCP server sees the call cancelled."""

from __future__ import annotations

import json
import socket
from typing import Any

import httpx
import pytest

from tests.conftest import TEST_KEY, mcp_tool
from tests.fixtures.mcp_servers import RunningMcpServer
from tests.fixtures.servers import ServerThread
from tests.fixtures.waiting import wait_until


def hang_up_during_slow_call(
    toolbridge: ServerThread, server: RunningMcpServer, path: str, body: dict[str, Any]
) -> None:
    """Post over a raw socket, wait until the tool is running, then close the connection."""
    server.log.reset()
    payload = json.dumps(body).encode()
    head = (
        f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
        f"Authorization: Bearer {TEST_KEY}\r\nContent-Length: {len(payload)}\r\n\r\n"
    )
    with socket.create_connection(("127.0.0.1", toolbridge.port)) as conn:
        conn.sendall(head.encode() + payload)
        wait_until(lambda: server.log.slow_started == 1, what="the tool running")


@pytest.mark.parametrize("kind", ["modern", "legacy"])
@pytest.mark.parametrize("stream", [False, True])
def test_disconnect_cancels_the_mcp_call(
    toolbridge: ServerThread, mcp_servers: dict[str, RunningMcpServer], kind: str, stream: bool
) -> None:
    server = mcp_servers[kind]
    hang_up_during_slow_call(
        toolbridge,
        server,
        "/v1/chat/completions",
        {
            "model": "scripted-a",
            "stream": stream,
            "tools": [mcp_tool(server)],
            "messages": [{"role": "user", "content": 'call calc__slow {"seconds": 30}'}],
        },
    )
    wait_until(lambda: server.log.cancelled == 1, what="the MCP call cancelled")


def test_disconnect_cancels_a_responses_run(
    toolbridge: ServerThread, mcp_server: RunningMcpServer
) -> None:
    hang_up_during_slow_call(
        toolbridge,
        mcp_server,
        "/v1/responses",
        {
            "model": "scripted-a",
            "input": 'call calc__slow {"seconds": 30}',
            "tools": [mcp_tool(mcp_server, require_approval="never")],
        },
    )
    wait_until(lambda: mcp_server.log.cancelled == 1, what="the MCP call cancelled")


def test_disconnect_during_a_model_call_releases_its_budget_hold(
    toolbridge_factory: Any,
) -> None:
    """A key with a limit holds each call (without one, a call may hold nothing at all:
    ``Ledger.reserve``); a client that hangs up mid-call gets its hold released."""
    key = "sk-capped-cancel"
    server = toolbridge_factory(api_keys=[{"id": "capped", "key": key, "budget": {"total_usd": 5}}])

    def held() -> float:
        view = httpx.get(
            f"{server.url}/v1/budget", timeout=30, headers={"Authorization": f"Bearer {key}"}
        ).json()
        return float(view["scopes"][0]["held_usd"])

    payload = json.dumps(
        {"model": "scripted-a", "messages": [{"role": "user", "content": "sleep 30"}]}
    ).encode()
    head = (
        f"POST /v1/chat/completions HTTP/1.1\r\nHost: 127.0.0.1\r\n"
        f"Content-Type: application/json\r\nAuthorization: Bearer {key}\r\n"
        f"Content-Length: {len(payload)}\r\n\r\n"
    )
    with socket.create_connection(("127.0.0.1", server.port)) as conn:
        conn.sendall(head.encode() + payload)
        wait_until(lambda: held() > 0, what="the model call holding budget")
    wait_until(lambda: held() == 0, what="the hold released after the cancelled run")
