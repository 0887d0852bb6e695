"""Every use of the ``mcp`` SDK's private or internal API, in one place (pinned: mcp==2.3.0).

``check()`` runs at start-up, so an SDK that changed under us stops toolbridge with a clear
message instead of failing requests later as if an MCP server were at fault; a test pins each
use against the installed SDK.
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

import mcp_types as types
from mcp.client import session as session_module
from mcp.client.auth import OAuthClientProvider
from mcp.client.session import ClientSession
from mcp.shared.jsonrpc_dispatcher import JSONRPCDispatcher


class SdkIncompatible(RuntimeError):
    """The installed ``mcp`` SDK lacks an internal toolbridge relies on."""


def absorb_tool_listing(session: Any, tools: list[types.Tool]) -> list[types.Tool]:
    """Make the session know ``tools`` without listing them (as it does on a cache hit), and
    return the tools it kept: on a 2026-07-28 session it drops tools with invalid x-mcp-header
    annotations, and the model must never be offered those.

    Private: ``ClientSession._absorb_tool_listing``."""
    listing = types.ListToolsResult(tools=list(tools))
    kept: types.ListToolsResult = session._absorb_tool_listing(listing, complete=True)
    return list(kept.tools)


InputDispatch = Callable[[Any, types.InputRequest], Awaitable[Any]]


def wrap_input_dispatch(session: Any, wrap: Callable[[InputDispatch], InputDispatch]) -> None:
    """Route every server-to-client request of ``session`` through ``wrap(original)``.

    Internal: relies on the session calling ``self.dispatch_input_request`` for both eras."""
    session.dispatch_input_request = wrap(session.dispatch_input_request)


async def send_unvalidated(session: Any, request: types.Request[Any, Any]) -> dict[str, Any]:
    """Send ``request`` as ``ClientSession.send_request`` does, and return the raw result.

    For a 2025-11-25 task-augmented ``tools/call``: the SDK validates every ``tools/call``
    result as a ``CallToolResult`` and so refuses the ``CreateTaskResult`` the server must send.

    Private: ``ClientSession._stamp`` (version headers and ``_meta``), ``._dispatcher``."""
    data = request.model_dump(by_alias=True, mode="json", exclude_none=True)
    opts: dict[str, Any] = {}
    session._stamp(data, opts)
    raw: dict[str, Any] = await session._dispatcher.send_raw_request(
        data["method"], data.get("params"), opts
    )
    return raw


def stamp(session: Any, data: dict[str, Any]) -> dict[str, str]:
    """Stamp ``data`` (``{"method", "params"}``) as the session stamps every request it sends:
    on a 2026-07-28 session the ``_meta`` protocol version, client info and capabilities; and
    return the headers that go with it (``MCP-Protocol-Version``, ``Mcp-Method``, ``Mcp-Name``
    and a tool's ``Mcp-Param-*`` headers from its listed ``x-mcp-header`` annotations).

    Private: ``ClientSession._stamp(data, opts)``."""
    opts: dict[str, Any] = {}
    session._stamp(data, opts)
    headers: dict[str, str] = opts.get("headers", {})
    return headers


def intercept_notifications(session: Any, seen: Callable[[str], None]) -> None:
    """Tell ``seen`` the method of every notification ``session`` receives, on the dispatcher's
    receive path: in the order received, so before the result of a call whose stream carried
    it reaches the caller. (The SDK hands notifications to the session in spawned tasks, which
    can run after that result: a ``tools/list_changed`` seen late let the next run reuse the
    old tool list, a flaky CI run.)

    Private: ``JSONRPCDispatcher._on_notify_intercept`` (set when the session starts)."""
    dispatcher = session._dispatcher
    session_intercept = dispatcher._on_notify_intercept

    def intercept(method: str, params: Mapping[str, Any] | None) -> bool:
        seen(method)
        return bool(session_intercept(method, params)) if session_intercept else False

    dispatcher._on_notify_intercept = intercept


async def deliver_notification(session: Any, method: str, params: Any) -> None:
    """Handle a server notification that arrived outside the SDK's transport as the session's
    dispatcher handles its own: its receive-path intercept first (``intercept_notifications``),
    then, unless that consumed it, validated, to the logging callback and the message handler
    (which evicts the shared cache on ``notifications/tools/list_changed``).

    Private: ``JSONRPCDispatcher._on_notify_intercept``, ``ClientSession._on_notify(dctx,
    method, params)`` (it does not read ``dctx``)."""
    intercept = session._dispatcher._on_notify_intercept
    if intercept is not None and intercept(method, params):
        return
    await session._on_notify(None, method, params)


def cache_claim_adapters() -> None:
    """Build the ``tools/call`` result adapter once per set of result claims, not per session.

    A client with result claims (our tasks extension) makes the SDK build a pydantic
    ``TypeAdapter`` for every session it opens (about a millisecond of CPU, profiled), though it
    depends only on the claims, which are the same objects every time
    (``app/mcp/features/tasks.py``).

    Private: ``mcp.client.session._build_call_tool_adapter(active)``, replaced by a caching
    wrapper (idempotent)."""
    build = session_module._build_call_tool_adapter
    if hasattr(build, "toolbridge_cached"):
        return
    built: dict[frozenset[tuple[str, Any]], Any] = {}

    @functools.wraps(build)
    def cached(active: Mapping[str, Any]) -> Any:
        key = frozenset(active.items())
        if key not in built:
            built[key] = build(active)
        return built[key]

    cached.toolbridge_cached = True  # type: ignore[attr-defined]
    session_module._build_call_tool_adapter = cached


def use_output_validators(session: Any, make: Callable[[str, dict[str, Any]], Any]) -> None:
    """Check tool results' ``structuredContent`` with validators ``make(name, schema)`` builds
    (``app/mcp/schemas.py``: linear-time patterns, bounded cache) instead of the SDK's, whose
    regular expressions backtrack on the event loop.

    Private: ``ClientSession._output_schema_validator(name, output_schema)``, replaced on the
    instance (the SDK calls it from ``validate_tool_result`` for every result)."""
    session._output_schema_validator = make


def fix_token_endpoint(provider: Any, token_url: str) -> None:
    """Send ``provider``'s token requests to ``token_url`` (the operator's ``token_url``)
    whatever discovery finds.

    Private: ``OAuthClientProvider._get_token_endpoint()``, replaced on the instance."""
    provider._get_token_endpoint = lambda: token_url


def _require(present: bool, what: str) -> None:
    if not present:
        raise SdkIncompatible(
            f"the installed mcp SDK has no {what}: toolbridge is pinned to mcp==2.3.0 "
            "(see app/mcp/sessions/sdk_internals.py)"
        )


def _parameters(function: Any) -> list[str] | None:
    return None if function is None else list(inspect.signature(function).parameters)


def check() -> None:
    """Raise ``SdkIncompatible`` unless every internal above exists with the expected shape."""
    absorb = getattr(ClientSession, "_absorb_tool_listing", None)
    _require(
        absorb is not None and "complete" in (_parameters(absorb) or []),
        "ClientSession._absorb_tool_listing(result, complete=)",
    )
    _require(
        _parameters(getattr(session_module, "_build_call_tool_adapter", None)) == ["active"],
        "mcp.client.session._build_call_tool_adapter(active)",
    )
    init = inspect.getsource(ClientSession.__init__)
    _require(
        "self._stamp" in init and "self._dispatcher" in init,
        "ClientSession._stamp and ._dispatcher",
    )
    _require(
        _parameters(getattr(ClientSession, "_output_schema_validator", None))
        == ["self", "name", "output_schema"],
        "ClientSession._output_schema_validator(name, output_schema)",
    )
    _require(
        _parameters(getattr(OAuthClientProvider, "_get_token_endpoint", None)) == ["self"],
        "OAuthClientProvider._get_token_endpoint()",
    )
    _require(
        inspect.iscoroutinefunction(getattr(ClientSession, "dispatch_input_request", None)),
        "ClientSession.dispatch_input_request",
    )
    _require(
        _parameters(getattr(ClientSession, "_on_notify", None))
        == ["self", "dctx", "method", "params"]
        and "dctx" not in inspect.getsource(ClientSession._on_notify).split("-> None:", 1)[-1],
        "ClientSession._on_notify(dctx, method, params), not reading dctx",
    )
    _require(
        "self._on_notify_intercept" in inspect.getsource(JSONRPCDispatcher._dispatch_notification)
        and "self._on_notify_intercept = on_notify_intercept"
        in inspect.getsource(JSONRPCDispatcher.run),
        "JSONRPCDispatcher._on_notify_intercept, read per notification",
    )
