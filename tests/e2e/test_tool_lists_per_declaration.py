"""Tool lists are cached per what toolbridge declares: a server may offer a tool only to
clients that can sample, so a key that lets servers sample and one that does not must each
see the server's own answer to them, whoever listed it first."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import mcp_types as types
import openai
import pytest
from mcp.server.caching import CacheHint
from mcp.server.mcpserver import MCPServer

from app.mcp.sessions import sdk_internals
from tests.fixtures.mcp_servers import RequestLog, _counting
from tests.fixtures.servers import ServerThread

KEYS = [
    {"id": "plain", "key": "sk-plain"},
    {"id": "sampling", "key": "sk-sampling", "allow_sampling": True},
]


class SamplingOnlyToolServer(MCPServer):
    """Offers ``summarize`` only to clients that declare sampling (as server-everything does
    with ``trigger-sampling-request``)."""

    async def _handle_list_tools(self, ctx: Any, params: Any) -> types.ListToolsResult:
        listed = await super()._handle_list_tools(ctx, params)
        capabilities = ctx.session.client_capabilities
        if capabilities is None or capabilities.sampling is None:
            listed.tools = [t for t in listed.tools if t.name != "summarize"]
        return listed


def build_server() -> MCPServer:
    server = SamplingOnlyToolServer(
        "sampling-only", cache_hints={"tools/list": CacheHint(ttl_ms=60_000, scope="public")}
    )

    @server.tool()
    def echo(text: str) -> str:
        """Echo the text."""
        return text

    @server.tool()
    def summarize(text: str) -> str:
        """Would sample the client's model."""
        return text[:10]

    return server


@pytest.fixture(scope="module", params=["modern", "legacy"])
def server_url(request: pytest.FixtureRequest) -> Iterator[tuple[str, RequestLog]]:
    server = build_server()
    if request.param == "legacy":
        server._lowlevel_server._request_handlers.pop("server/discover", None)
    log = RequestLog()
    thread = ServerThread(_counting(server.streamable_http_app(), log)).start()
    yield f"{thread.url}/mcp", log
    thread.stop()


def listed_tools(toolbridge: ServerThread, key: str, url: str) -> list[str]:
    client = openai.OpenAI(base_url=f"{toolbridge.url}/v1", api_key=key, max_retries=0)
    response = client.responses.create(
        model="scripted-a",
        input="hi",
        tools=[
            {"type": "mcp", "server_label": "s", "server_url": url, "require_approval": "never"}
        ],
    )
    listing = next(item for item in response.output if item.type == "mcp_list_tools")
    return sorted(tool.name for tool in listing.tools)


def test_each_declaration_gets_its_own_list(
    toolbridge_factory: Any, server_url: tuple[str, RequestLog]
) -> None:
    url, log = server_url
    toolbridge = toolbridge_factory(api_keys=KEYS)
    assert listed_tools(toolbridge, "sk-plain", url) == ["echo"]
    assert listed_tools(toolbridge, "sk-sampling", url) == ["echo", "summarize"]
    log.reset()
    # Both lists now come from the cache, each to the client it was listed for.
    assert listed_tools(toolbridge, "sk-plain", url) == ["echo"]
    assert listed_tools(toolbridge, "sk-sampling", url) == ["echo", "summarize"]
    assert log.methods["tools/list"] == 0


def test_the_sdk_internals_toolbridge_relies_on_are_there() -> None:
    sdk_internals.check()


def test_a_changed_sdk_stops_start_up_with_a_clear_message(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from mcp.client.session import ClientSession

    monkeypatch.delattr(ClientSession, "_absorb_tool_listing")
    with pytest.raises(sdk_internals.SdkIncompatible, match="pinned to mcp==2.3.0"):
        sdk_internals.check()
