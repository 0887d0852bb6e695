"""A server's notifications reach a session's callbacks in the order they arrived: a
``tools/list_changed`` sent on a call's stream, ahead of its result, is known when the call
returns, in both eras and on both call paths, however long the SDK's own cache eviction takes
(it runs later, in a task of its own)."""

from __future__ import annotations

import ssl
from collections.abc import Iterator

import anyio
import httpx2
import mcp_types as types
import pytest
from mcp import Client
from mcp.client.caching import CacheConfig, CacheEntry, CacheKey
from mcp.client.streamable_http import streamable_http_client
from mcp.server.mcpserver import Context

from app.mcp.features.callbacks import ServerCallbacks
from app.mcp.sessions import direct_calls
from app.mcp.sessions.sdk_internals import intercept_notifications
from app.mcp.transport.clients import HttpRoute
from app.mcp.transport.http import AiohttpTransport, Httpx2Wire
from tests.fixtures.mcp_servers import build_test_server
from tests.fixtures.servers import ServerThread


class StalledEvictions:
    """A response cache store whose deletes, once ``stalled``, wait for ``released``, as behind
    a Redis that is slow to answer: the SDK's eviction on ``tools/list_changed`` stays pending
    until then."""

    def __init__(self) -> None:
        self.entries: dict[CacheKey, CacheEntry] = {}
        self.stalled = False
        self.released = anyio.Event()

    async def get(self, key: CacheKey) -> CacheEntry | None:
        return self.entries.get(key)

    async def set(self, key: CacheKey, entry: CacheEntry) -> None:
        self.entries[key] = entry

    async def delete(self, key: CacheKey) -> None:
        if self.stalled:
            await self.released.wait()
        self.entries.pop(key, None)

    async def clear(self) -> None:
        self.entries.clear()


def _serve_growing(*, legacy: bool) -> Iterator[str]:
    server = build_test_server(legacy_only=legacy)

    @server.tool()
    async def grow(ctx: Context) -> str:
        """Says the tool list changed, on this call's own stream, then answers."""
        await ctx.session.send_notification(
            types.ToolListChangedNotification(), related_request_id=ctx.request_context.request_id
        )
        return "grew"

    thread = ServerThread(server.streamable_http_app()).start()
    yield f"{thread.url}/mcp"
    thread.stop()


@pytest.fixture(scope="module")
def modern_url() -> Iterator[str]:
    yield from _serve_growing(legacy=False)


@pytest.fixture(scope="module")
def legacy_url() -> Iterator[str]:
    yield from _serve_growing(legacy=True)


async def _no_progress(progress: float, total: float | None, message: str | None) -> None:
    raise AssertionError("no progress expected")


def _changed_when_the_call_returns(url: str, *, direct: bool) -> bool:
    async def go() -> bool:
        callbacks = ServerCallbacks("grow")
        store = StalledEvictions()
        cache = CacheConfig(store=store, partition="p", target_id=url, default_ttl_ms=60_000)
        pool = AiohttpTransport(verify=ssl.create_default_context(), limits=httpx2.Limits())
        async with (
            httpx2.AsyncClient(transport=Httpx2Wire(pool)) as http,
            Client(
                streamable_http_client(url, http_client=http),
                cache=cache,
                **callbacks.client_options(),
            ) as client,
        ):
            intercept_notifications(client.session, callbacks.saw_notification)
            await client.list_tools()
            assert not callbacks.tools_changed
            store.stalled = True
            if direct:
                assert direct_calls.applies(client)
                route = HttpRoute(url, http, pool)
                result = await direct_calls.call_tool(client, route, "grow", {}, _no_progress)
                assert result is not None
            else:
                result = await client.call_tool("grow", {})
            assert result.content[0].text == "grew"  # type: ignore[union-attr]
            changed = callbacks.tools_changed
            store.released.set()  # the eviction (shielded from cancellation) may end now
        await pool.aclose()
        return changed

    return anyio.run(go)


@pytest.mark.parametrize("era", ["legacy", "modern"])
def test_a_change_said_before_the_result_is_known_when_the_sdk_call_returns(
    era: str, request: pytest.FixtureRequest
) -> None:
    url = request.getfixturevalue(f"{era}_url")
    assert _changed_when_the_call_returns(url, direct=False)


def test_a_change_said_on_a_direct_call_is_known_when_it_returns(modern_url: str) -> None:
    assert _changed_when_the_call_returns(modern_url, direct=True)
