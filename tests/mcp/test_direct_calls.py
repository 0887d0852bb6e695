"""Tool calls sent directly on 2026-07-28 Streamable HTTP sessions
(``app/mcp/sessions/direct_calls.py``), against a real MCP server over HTTP: the POST is the one
the SDK sends, and every kind of answer is read as the SDK reads it, or left to the SDK."""

from __future__ import annotations

import json
import ssl
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Annotated, Any

import anyio
import httpx2
import mcp_types as types
import pytest
from mcp import Client
from mcp.client.streamable_http import streamable_http_client
from mcp.server.mcpserver import Context, MCPServer
from mcp.shared.exceptions import MCPError
from mcp_types.jsonrpc import METHOD_NOT_FOUND
from opentelemetry import trace
from opentelemetry.trace import NonRecordingSpan, SpanContext, TraceFlags
from pydantic import Field
from starlette.types import Receive, Scope, Send

from app.mcp.sessions import direct_calls
from app.mcp.transport.clients import HttpRoute
from app.mcp.transport.http import AiohttpTransport, Httpx2Wire
from tests.fixtures.mcp_servers import build_test_server
from tests.fixtures.servers import ServerThread


@dataclass
class Wire:
    """The ``tools/call`` POSTs the server received: headers and JSON bodies."""

    calls: list[tuple[dict[str, str], dict[str, Any]]] = field(default_factory=list)
    fail_with: int | None = None
    """Answer every POST with this HTTP status instead of serving it."""


def _recorded(app: Any, wire: Wire) -> Any:
    async def wrapped(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] != "POST":
            await app(scope, receive, send)
            return
        messages = [await receive()]
        while messages[-1].get("more_body"):
            messages.append(await receive())
        body = json.loads(b"".join(m.get("body", b"") for m in messages))
        if body.get("method") == "tools/call":
            wire.calls.append(({k.decode(): v.decode() for k, v in scope["headers"]}, body))
            if wire.fail_with is not None:
                await send({"type": "http.response.start", "status": wire.fail_with})
                await send({"type": "http.response.body", "body": b"no"})
                return

        async def replay() -> Any:
            return messages.pop(0) if messages else await receive()

        await app(scope, replay, send)

    return wrapped


def _server() -> MCPServer:
    server = build_test_server()

    @server.tool()
    def where(
        region: Annotated[str, Field(json_schema_extra={"x-mcp-header": "Region"})],
        ctx: Context,
    ) -> str:
        """The region, and the Mcp-Param-Region header that came with it."""
        return f"{region} via {(ctx.headers or {}).get('mcp-param-region')}"

    return server


@pytest.fixture(scope="module")
def served() -> Iterator[tuple[str, Wire]]:
    wire = Wire()
    thread = ServerThread(_recorded(_server().streamable_http_app(), wire)).start()
    yield f"{thread.url}/mcp", wire
    thread.stop()


@asynccontextmanager
async def session(url: str, **options: Any) -> AsyncIterator[tuple[Client, HttpRoute]]:
    """A listed 2026-07-28 session, and the route a direct call takes on it."""
    pool = AiohttpTransport(verify=ssl.create_default_context(), limits=httpx2.Limits())
    try:
        async with (
            httpx2.AsyncClient(transport=Httpx2Wire(pool)) as http,
            Client(streamable_http_client(url, http_client=http), **options) as client,
        ):
            await client.list_tools()  # the listing tells the session the x-mcp-header params
            yield client, HttpRoute(url, http, pool)
    finally:
        await pool.aclose()


async def _no_progress(progress: float, total: float | None, message: str | None) -> None:
    raise AssertionError("no progress expected")


PER_REQUEST = {"progressToken", "traceparent", "tracestate"}
"""What differs between two requests: the id, and the trace context (of the SDK's own span)."""


def _without_ids(body: dict[str, Any]) -> dict[str, Any]:
    params = dict(body["params"])
    params["_meta"] = {k: v for k, v in params["_meta"].items() if k not in PER_REQUEST}
    return {**body, "id": None, "params": params}


def test_the_direct_post_is_the_one_the_sdk_sends(served: tuple[str, Wire]) -> None:
    url, wire = served

    async def go() -> tuple[types.CallToolResult | None, types.CallToolResult]:
        async with session(url) as (client, route):
            assert direct_calls.applies(client)
            wire.calls.clear()
            direct = await direct_calls.call_tool(
                client, route, "where", {"region": "eu-west"}, _no_progress
            )
            by_sdk = await client.call_tool(
                "where", {"region": "eu-west"}, progress_callback=_no_progress
            )
            return direct, by_sdk

    direct, by_sdk = anyio.run(go)
    assert direct is not None
    assert direct.content == by_sdk.content
    assert direct.structured_content == by_sdk.structured_content
    assert direct.content[0].text == "eu-west via eu-west"  # type: ignore[union-attr]
    (direct_headers, direct_body), (sdk_headers, sdk_body) = wire.calls
    unframed = {"content-length"}
    assert {k: v for k, v in direct_headers.items() if k not in unframed} == {
        k: v for k, v in sdk_headers.items() if k not in unframed
    }
    assert direct_headers["mcp-param-region"] == "eu-west"
    assert _without_ids(direct_body) == _without_ids(sdk_body)
    assert direct_body["params"]["_meta"]["progressToken"] == direct_body["id"]


def test_the_calls_trace_context_goes_with_it(served: tuple[str, Wire]) -> None:
    url, wire = served
    context = SpanContext(
        trace_id=0x0AF7651916CD43DD8448EB211C80319C,
        span_id=0xB7AD6B7169203331,
        is_remote=False,
        trace_flags=TraceFlags(TraceFlags.SAMPLED),
    )

    async def go() -> None:
        async with session(url) as (client, route):
            wire.calls.clear()
            with trace.use_span(NonRecordingSpan(context)):
                await direct_calls.call_tool(client, route, "add", {"a": 1, "b": 2}, _no_progress)

    anyio.run(go)
    [(_, body)] = wire.calls
    traceparent = body["params"]["_meta"]["traceparent"]
    assert traceparent == "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"


def test_progress_on_an_event_stream_reaches_the_caller(served: tuple[str, Wire]) -> None:
    url, _ = served
    seen: list[tuple[float, float | None, str | None]] = []

    async def progressed(progress: float, total: float | None, message: str | None) -> None:
        seen.append((progress, total, message))

    async def go() -> types.CallToolResult | None:
        async with session(url) as (client, route):
            return await direct_calls.call_tool(
                client, route, "progress_steps", {"steps": 3}, progressed
            )

    result = anyio.run(go)
    assert result is not None and result.content[0].text == "3 steps"  # type: ignore[union-attr]
    assert seen == [(1, 3, "step 1"), (2, 3, "step 2"), (3, 3, "step 3")]


def test_tool_errors_read_as_the_sdk_reads_them(served: tuple[str, Wire]) -> None:
    url, _ = served

    async def both(client: Client, route: HttpRoute, tool: str, arguments: dict[str, Any]) -> Any:
        outcomes = []
        for call in (
            lambda: direct_calls.call_tool(client, route, tool, arguments, _no_progress),
            lambda: client.call_tool(tool, arguments),
        ):
            try:
                result = await call()
                assert result is not None
                outcomes.append((result.is_error, result.content))
            except MCPError as exc:
                outcomes.append((exc.code, exc.error.message))
        return outcomes

    async def go() -> list[Any]:
        async with session(url) as (client, route):
            return [
                await both(client, route, "fail", {"message": "nope"}),
                await both(client, route, "no_such_tool", {}),
                await both(client, route, "add", {"a": "not a number", "b": 1}),
            ]

    for direct, by_sdk in anyio.run(go):
        assert direct == by_sdk
        assert direct[0] is not False  # each one failed


def test_an_http_error_is_mapped_as_the_sdk_maps_it(served: tuple[str, Wire]) -> None:
    url, wire = served

    async def go(status: int) -> tuple[int, int]:
        async with session(url) as (client, route):
            wire.fail_with = status
            try:
                with pytest.raises(MCPError) as direct:
                    await direct_calls.call_tool(
                        client, route, "add", {"a": 1, "b": 2}, _no_progress
                    )
                with pytest.raises(MCPError) as by_sdk:
                    await client.call_tool("add", {"a": 1, "b": 2})
            finally:
                wire.fail_with = None
            return direct.value.code, by_sdk.value.code

    assert anyio.run(go, 404) == (METHOD_NOT_FOUND, METHOD_NOT_FOUND)
    direct, by_sdk = anyio.run(go, 500)
    assert direct == by_sdk


def test_a_call_that_needs_input_is_left_to_the_sdk(served: tuple[str, Wire]) -> None:
    url, wire = served
    asked: list[str] = []

    async def elicit(context: Any, params: types.ElicitRequestParams) -> types.ElicitResult:
        asked.append(params.message)
        return types.ElicitResult(action="decline")

    async def go() -> tuple[types.CallToolResult | None, types.CallToolResult]:
        async with session(url, elicitation_callback=elicit) as (client, route):
            wire.calls.clear()
            direct = await direct_calls.call_tool(client, route, "greet", {}, _no_progress)
            return direct, await client.call_tool("greet", {})

    direct, by_sdk = anyio.run(go)
    assert direct is None  # the server asked for input: nothing was answered here
    assert asked == ["What is your name?"]  # the SDK answered it, once
    assert by_sdk.content[0].text == "elicitation decline"  # type: ignore[union-attr]
