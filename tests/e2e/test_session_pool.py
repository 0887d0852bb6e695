"""Warm MCP sessions (``app/mcp/sessions/pool.py``): one request per tool call on a stateful
server, a stdio process kept between runs, nothing shared across keys or credentials, and
nothing reused after a failure."""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from typing import Any

import openai
import psutil
import pytest
from mcp import types
from mcp.server.mcpserver import Context
from starlette.types import ASGIApp, Receive, Scope, Send

from app.config import ApiKeyConfig, RegisteredServer
from tests.conftest import TEST_KEY, mcp_tool
from tests.fixtures.mcp_servers import RequestLog, RunningMcpServer, _counting, build_test_server
from tests.fixtures.servers import ServerThread
from tests.fixtures.waiting import wait_until

ADD = 'call calc__add {"a": 1, "b": 1}'
OTHER_KEY = "sk-test-other-caller"


def client_for(server: ServerThread, key: str = TEST_KEY) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{server.url}/v1", api_key=key, max_retries=0)


def chat(client: openai.OpenAI, tool: dict[str, Any], script: str = ADD, **extra: Any) -> Any:
    return client.chat.completions.create(
        model="scripted-a",
        messages=[{"role": "user", "content": script}],
        tools=[tool],  # type: ignore[list-item]
        **extra,
    )


def add_once(client: openai.OpenAI, server: RunningMcpServer, **tool: Any) -> None:
    completion = chat(client, mcp_tool(server, **tool))
    assert completion.choices[0].message.content == "done: calc__add=2"


@pytest.fixture
def bridge(toolbridge_factory: Any) -> ServerThread:
    """A toolbridge of its own (an empty pool), with a second caller key."""
    keys = [
        ApiKeyConfig(id="tester", key=TEST_KEY),
        ApiKeyConfig(id="other", key=OTHER_KEY),
    ]
    server: ServerThread = toolbridge_factory(api_keys=keys)
    return server


@pytest.mark.parametrize("kind", ["legacy", "sse"])
def test_a_warm_stateful_session_costs_one_http_request_per_tool_call(
    bridge: ServerThread, mcp_servers: dict[str, RunningMcpServer], kind: str
) -> None:
    server, client = mcp_servers[kind], client_for(bridge)
    add_once(client, server)
    assert server.log.methods["initialize"] >= 1
    for _ in range(3):
        server.log.reset()
        add_once(client, server)
        assert dict(server.log.methods) == {"tools/call": 1}
        assert server.log.http_requests == 1


def test_sessions_are_never_shared_across_keys_or_credentials(
    bridge: ServerThread, mcp_servers: dict[str, RunningMcpServer]
) -> None:
    server = mcp_servers["legacy"]
    mine, theirs = client_for(bridge), client_for(bridge, OTHER_KEY)
    add_once(mine, server)
    server.log.reset()
    add_once(theirs, server)
    assert server.log.methods["initialize"] == 1  # another key: a session of its own
    server.log.reset()
    add_once(mine, server, headers={"X-Test-Token": "alice"})
    assert server.log.methods["initialize"] == 1  # other credentials: one of their own too
    server.log.reset()
    add_once(mine, server)
    add_once(theirs, server)
    add_once(mine, server, headers={"X-Test-Token": "alice"})
    assert server.log.methods["initialize"] == 0
    whoami = chat(mine, mcp_tool(server, headers={"X-Test-Token": "alice"}), "call calc__whoami {}")
    assert whoami.choices[0].message.content == "done: calc__whoami=alice"


def test_a_failed_call_does_not_leave_its_session_for_the_next_run(
    bridge: ServerThread, mcp_servers: dict[str, RunningMcpServer]
) -> None:
    server, client = mcp_servers["legacy"], client_for(bridge)
    add_once(client, server)
    timed_out = chat(
        client,
        mcp_tool(server),
        'call calc__slow {"seconds": 5}',
        extra_body={"mcp_limits": {"tool_timeout_s": 0.3}},
    )
    assert "timed out" in timed_out.choices[0].message.content
    server.log.reset()
    add_once(client, server)
    assert server.log.methods["initialize"] == 1


def test_pooling_can_be_turned_off(
    toolbridge_factory: Any, mcp_servers: dict[str, RunningMcpServer]
) -> None:
    server = mcp_servers["legacy"]
    client = client_for(toolbridge_factory(mcp_pool={"max_idle": 0}))
    add_once(client, server)
    server.log.reset()
    add_once(client, server)
    assert server.log.methods["initialize"] == 1


class Forgetful:
    """A 2025-11-25 server that forgets its sessions on demand while their GET streams stay
    open, as a server behind a load balancer that lost its state does: it answers 404."""

    def __init__(self, app: ASGIApp) -> None:
        self._app = app
        self.forgotten: set[str] = set()
        self.seen: set[str] = set()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            session = dict(scope["headers"]).get(b"mcp-session-id", b"").decode()
            if session and session in self.forgotten and scope["method"] == "POST":
                body = json.dumps(
                    {"jsonrpc": "2.0", "id": None, "error": {"code": -32600, "message": "gone"}}
                )
                await send(
                    {
                        "type": "http.response.start",
                        "status": 404,
                        "headers": [(b"content-type", b"application/json")],
                    }
                )
                await send({"type": "http.response.body", "body": body.encode()})
                return
            if session:
                self.seen.add(session)
        await self._app(scope, receive, send)


@pytest.fixture
def forgetful() -> Iterator[tuple[Forgetful, RunningMcpServer]]:
    log = RequestLog()
    app = Forgetful(_counting(build_test_server(log, legacy_only=True).streamable_http_app(), log))
    thread = ServerThread(app).start()
    yield app, RunningMcpServer(kind="legacy", url=f"{thread.url}/mcp", log=log, thread=thread)
    thread.stop()


def test_a_session_the_server_forgot_is_reopened_and_the_call_sent_again(
    bridge: ServerThread, forgetful: tuple[Forgetful, RunningMcpServer]
) -> None:
    app, server = forgetful
    client = client_for(bridge)
    add_once(client, server)
    app.forgotten |= app.seen
    server.log.reset()
    add_once(client, server)  # the 404 is not the caller's problem
    # The forgotten session's call never reached the server; the new session's did, once.
    assert server.log.methods["tools/call"] == 1
    assert server.log.methods["initialize"] == 1
    server.log.reset()
    add_once(client, server)
    assert dict(server.log.methods) == {"tools/call": 1}


def _stdio_servers() -> list[psutil.Process]:
    """The stdio test servers running now (one that exited, zombie or gone, is not)."""
    running = []
    for process in psutil.Process().children(recursive=True):
        try:
            if process.status() == psutil.STATUS_ZOMBIE:
                continue
            if "tests.fixtures.mcp_servers" in " ".join(process.cmdline()):
                running.append(process)
        except (psutil.NoSuchProcess, psutil.ZombieProcess):
            continue  # it exited while we looked
    return running


def test_a_stdio_server_stays_up_between_runs_and_stops_when_idle(
    toolbridge_factory: Any,
) -> None:
    before = {p.pid for p in _stdio_servers()}
    bridge = toolbridge_factory(
        mcp_pool={"idle_s": 5.0},  # longer than any gap between the three runs
        mcp_servers=[
            RegisteredServer(
                label="calc",
                transport="stdio",
                command=[sys.executable, "-m", "tests.fixtures.mcp_servers"],
            )
        ],
    )
    client = client_for(bridge)
    tool = {"type": "mcp", "server_label": "calc"}
    seen = []
    for _ in range(3):
        assert chat(client, tool).choices[0].message.content == "done: calc__add=2"
        seen.append({p.pid for p in _stdio_servers()} - before)
    assert len(seen[0]) == 1 and seen[0] == seen[1] == seen[2]  # one process served all three
    wait_until(
        lambda: not {p.pid for p in _stdio_servers()} - before, what="the idle server stopped"
    )


@pytest.fixture
def growing() -> Iterator[RunningMcpServer]:
    """A 2025-11-25 server whose ``grow`` tool adds a tool and says so (tools/list_changed)."""
    log = RequestLog()
    server = build_test_server(log, legacy_only=True)

    @server.tool()
    async def grow(ctx: Context) -> str:
        """Adds the ``extra`` tool."""
        server.add_tool(lambda: "grown", name="extra", description="Added at run time.")
        # On this call's own stream, ahead of its result: said on the standalone GET stream, it
        # could reach toolbridge after the next run had leased the session (a flaky CI run).
        await ctx.session.send_notification(
            types.ToolListChangedNotification(), related_request_id=ctx.request_context.request_id
        )
        return "grew"

    thread = ServerThread(_counting(server.streamable_http_app(), log)).start()
    yield RunningMcpServer(kind="legacy", url=f"{thread.url}/mcp", log=log, thread=thread)
    thread.stop()


def test_a_warm_session_reuses_its_tool_list_until_the_server_says_it_changed(
    bridge: ServerThread, growing: RunningMcpServer
) -> None:
    client = client_for(bridge)
    add_once(client, growing)
    growing.log.reset()
    add_once(client, growing)
    assert dict(growing.log.methods) == {"tools/call": 1}  # neither listed nor read from Redis
    grown = chat(client, mcp_tool(growing), "call calc__grow {}")
    assert grown.choices[0].message.content == "done: calc__grow=grew"
    extra = chat(client, mcp_tool(growing), "call calc__extra {}")
    assert extra.choices[0].message.content == "done: calc__extra=grown"
