"""Connections to MCP servers for one run, over one HTTP connection pool per process.

Every run opens its own MCP sessions (callbacks bound to one caller; no session is shared
between callers), but all of them ride one pooled ``httpx2`` transport, so TCP and TLS set-up
is paid once per server, not once per request.

Each connection lives in its own task inside the run's task group: AnyIO cancel scopes must be
entered and exited by the same task, and holding each session in a task of its own lets several
servers connect concurrently while the run keeps calling them from wherever it likes.
"""

from __future__ import annotations

import logging
import math
import ssl
import time
from collections.abc import Callable, Sequence
from contextlib import AsyncExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import anyio
import certifi
import httpx2
import mcp_types as types
from anyio.abc import TaskGroup, TaskStatus
from mcp import Client, StdioServerParameters
from mcp.client.caching import CacheConfig
from mcp.client.sse import sse_client
from mcp.client.streamable_http import streamable_http_client
from mcp.shared.exceptions import MCPError
from mcp_types.version import MODERN_PROTOCOL_VERSIONS
from pydantic import ValidationError

from app.errors import ServerUnreachable
from app.mcp.callbacks import Note, ServerCallbacks
from app.mcp.results import result_text, truncate
from app.mcp.sdk_internals import absorb_tool_listing
from app.mcp.servers import ServerSpec
from app.mcp.ssrf import PinnedTransport
from app.mcp.stdio import stdio_transport
from app.store.mcp_cache import EraStore, RedisResponseCacheStore

logger = logging.getLogger(__name__)

_LIST_PAGE_CAP = 100
"""Stops a server whose tools/list paginates forever."""
_CLOSE_TIMEOUT_S = 5.0
"""A server that hangs on session teardown cannot hold a finished run open longer."""
CLIENT_INFO = types.Implementation(name="toolbridge", version="0.1.0")


def tls_context(extra_ca_file: Path | None) -> ssl.SSLContext:
    """TLS for MCP servers: the public CAs (certifi), plus the operator's CA bundle if given
    (for servers with certificates from a private CA)."""
    context = ssl.create_default_context(cafile=certifi.where())
    if extra_ca_file is not None:
        context.load_verify_locations(cafile=str(extra_ca_file))
    return context


class _SharedTransport(httpx2.AsyncBaseTransport):
    """Lends the process-wide pool to a per-connection client; closing the client keeps it open."""

    def __init__(self, pool: httpx2.AsyncBaseTransport) -> None:
        self._pool = pool

    async def handle_async_request(self, request: httpx2.Request) -> httpx2.Response:
        return await self._pool.handle_async_request(request)

    async def aclose(self) -> None:
        """The pool belongs to the process, not to this connection."""


@dataclass(frozen=True, slots=True)
class ToolOutcome:
    """What one tool call produced, as the model will read it."""

    text: str
    is_error: bool
    duration_s: float
    notes: tuple[Note, ...] = ()
    """What the caller should know: the server asked for input, sampled a model, ..."""


def describe_failure(exc: BaseException) -> str:
    """A reason safe to show the caller: no URLs with credentials, no headers."""
    while isinstance(exc, BaseExceptionGroup) and exc.exceptions:
        exc = exc.exceptions[0]
    match exc:
        case MCPError():
            return f"MCP error {exc.code}: {exc.error.message}"
        case httpx2.HTTPStatusError():
            return f"the server answered HTTP {exc.response.status_code}"
        case TimeoutError():
            return "timed out"
        case httpx2.TimeoutException():
            return "timed out"
        case httpx2.HTTPError() | OSError():
            return f"could not connect ({type(exc).__name__})"
    return f"{type(exc).__name__}"


class ServerConnection:
    """An open MCP session with one server, and the tools it offers this run."""

    def __init__(
        self,
        spec: ServerSpec,
        client: Client,
        tools: list[types.Tool],
        *,
        listed: bool,
        callbacks: ServerCallbacks,
    ) -> None:
        self.spec = spec
        self.tools = tools
        self.listed = listed  # False: the tools came from the conversation, not the server
        self._client = client
        self._callbacks = callbacks
        self._notes = callbacks.notes  # appended to by this connection's callbacks

    def _failed(self, tool: str, exc: Exception) -> str:
        """The error text for a failed call; a 2025-11-25 "URL elicitation required" (-32042)
        is reported like a declined URL elicitation, since no one here can open the URL."""
        if isinstance(exc, MCPError) and exc.code == types.URL_ELICITATION_REQUIRED:
            try:
                data = types.ElicitationRequiredErrorData.model_validate(exc.error.data)
            except ValidationError:
                data = types.ElicitationRequiredErrorData(elicitations=[])
            for elicitation in data.elicitations:
                self._notes.append(
                    {
                        "kind": "elicitation_declined",
                        "mode": "url",
                        "message": elicitation.message,
                        "url": elicitation.url,
                    }
                )
            logger.warning(
                "MCP server needs user interaction; declined: server=%s mode=url", self.spec.label
            )
            return f"Tool call needs user interaction: {exc.error.message}"
        logger.warning(
            "MCP tool call failed: server=%s tool=%s reason=%s",
            self.spec.label,
            tool,
            describe_failure(exc),
        )
        return f"Tool call failed: {describe_failure(exc)}"

    @property
    def session(self) -> Any:
        """The SDK session (its negotiated era, discover result, capabilities)."""
        return self._client.session

    async def call_tool(
        self, name: str, arguments: dict[str, Any], *, timeout_s: float, max_chars: int
    ) -> ToolOutcome:
        """Call a tool; any failure becomes an error outcome, never an exception.

        Notes the server's callbacks leave while the call runs are the call's (with parallel
        calls to one server, a note goes to every call in flight then)."""
        started, first_note = time.monotonic(), len(self._notes)
        self._callbacks.begin_call()
        try:
            with anyio.fail_after(timeout_s):
                result = await self._client.call_tool(name, arguments)
            text, is_error = result_text(result), result.is_error
        except TimeoutError:
            text, is_error = f"Tool call timed out after {timeout_s:g}s", True
        except Exception as exc:  # noqa: BLE001 - boundary: one tool call against a foreign server
            text, is_error = self._failed(name, exc), True
        finally:
            self._callbacks.end_call()
        notes = tuple(self._notes[first_note:])
        return ToolOutcome(truncate(text, max_chars), is_error, time.monotonic() - started, notes)


class McpConnector:
    """Process-wide MCP client resources: the HTTP pool and the shared caches."""

    def __init__(
        self,
        *,
        pool: httpx2.AsyncBaseTransport,
        caller_pool: httpx2.AsyncBaseTransport,
        cache_store: RedisResponseCacheStore,
        eras: EraStore,
        default_ttl_s: int,
        share_public: bool,
        stderr_level: int = logging.INFO,
    ) -> None:
        self._transport = _SharedTransport(pool)
        self._caller_pool = caller_pool
        """Caller-supplied servers' pool: connects only to checked addresses (``ssrf``)."""
        self._stderr_level = stderr_level
        self._cache_store = cache_store
        self.eras = eras
        self._default_ttl_ms = default_ttl_s * 1000
        self._share_public = share_public

    def _http_factory(self, spec: ServerSpec) -> Any:
        """Makes the per-connection HTTP clients: the shared pool, pinned for caller URLs."""
        transport: httpx2.AsyncBaseTransport = self._transport
        if spec.pinned is not None:
            transport = PinnedTransport(self._caller_pool, spec.pinned)

        def make(
            headers: dict[str, str] | None = None, timeout: Any = None, auth: Any = None
        ) -> httpx2.AsyncClient:
            timeout = timeout or httpx2.Timeout(30.0, read=300.0)
            return httpx2.AsyncClient(
                headers=headers, timeout=timeout, auth=auth, transport=transport
            )

        return make

    def client(self, spec: ServerSpec, era: Any, callbacks: ServerCallbacks) -> Client:
        """An unopened SDK client for ``spec``; ``era`` is the remembered one, if any."""
        if spec.transport == "stdio":
            params = StdioServerParameters(command=spec.command[0], args=list(spec.command[1:]))
            server: Any = stdio_transport(params, spec.label, self._stderr_level)
        elif spec.transport == "sse" or era == "sse":
            assert spec.url is not None
            server = sse_client(
                spec.url, headers=dict(spec.headers), httpx_client_factory=self._http_factory(spec)
            )
        else:
            assert spec.url is not None
            server = streamable_http_client(
                spec.url, http_client=self._http_factory(spec)(dict(spec.headers))
            )
        mode, prior = "auto", None
        if era in ("legacy", "sse") or spec.transport != "streamable_http":
            mode = "legacy"
        elif isinstance(era, types.DiscoverResult):
            mutual = [v for v in MODERN_PROTOCOL_VERSIONS if v in era.supported_versions]
            if mutual:
                mode, prior = mutual[-1], era
        cache = CacheConfig(
            store=self._cache_store,
            partition=spec.credential_hash(),
            # A server may offer other tools to a client that declares other capabilities.
            target_id=f"{spec.target()}#{callbacks.declaration()}",
            default_ttl_ms=self._default_ttl_ms,
            share_public=self._share_public,
        )
        return Client(
            server,
            mode=mode,
            prior_discover=prior,
            cache=cache,
            client_info=CLIENT_INFO,
            **callbacks.client_options(),
        )


class RunConnections:
    """The MCP sessions of one run; closing it closes them all (on the task that opened it)."""

    def __init__(
        self,
        connector: McpConnector,
        *,
        list_timeout_s: float,
        callbacks: Callable[[ServerSpec], ServerCallbacks] | None = None,
    ) -> None:
        self._connector = connector
        self._list_timeout_s = list_timeout_s
        self._callbacks = callbacks or (
            lambda spec: ServerCallbacks(spec.label, declare_elicitation=spec.elicitation)
        )
        self._release = anyio.Event()
        self._stack = AsyncExitStack()
        self._tg: TaskGroup | None = None

    async def __aenter__(self) -> RunConnections:
        self._tg = await self._stack.enter_async_context(anyio.create_task_group())
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: object
    ) -> bool:
        self._release.set()
        try:
            await self._stack.__aexit__(exc_type, exc, tb)
        except BaseExceptionGroup as group:
            # The task group wraps the run's own exception; let the original propagate as is.
            if exc is None or any(inner is not exc for inner in group.exceptions):
                raise
        return False

    async def open_all(self, specs: Sequence[ServerSpec]) -> list[ServerConnection]:
        """Connect to every server and list its tools, concurrently.

        Raises:
            ServerUnreachable: for the first server (in request order) that failed.
        """
        results: list[ServerConnection | ServerUnreachable | None] = [None] * len(specs)

        async def open_one(index: int, spec: ServerSpec) -> None:
            try:
                results[index] = await self._open(spec)
            except ServerUnreachable as exc:
                results[index] = exc

        async with anyio.create_task_group() as tg:
            for index, spec in enumerate(specs):
                tg.start_soon(open_one, index, spec)
        for result in results:
            if isinstance(result, ServerUnreachable):
                raise result
        return [r for r in results if isinstance(r, ServerConnection)]

    async def _open(self, spec: ServerSpec) -> ServerConnection:
        """Open with the remembered era, else probe: streamable HTTP, then the SSE fallback."""
        eras = self._connector.eras
        remembered = await eras.get(spec.target()) if spec.transport != "stdio" else None
        fresh: list[Any] = [None, "sse"] if spec.transport == "streamable_http" else [None]
        candidates = ([remembered] if remembered is not None else []) + fresh
        first_failure: BaseException | None = None
        for era in candidates:
            try:
                connection = await self._open_with(spec, era)
            except Exception as exc:  # noqa: BLE001 - boundary: connecting to a foreign server
                if era is remembered and remembered is not None:
                    await eras.forget(spec.target())  # stale (the server was redeployed)
                elif first_failure is None:
                    first_failure = exc
                continue
            if era is None and spec.transport == "streamable_http":
                session = connection.session
                await eras.set(spec.target(), session.discover_result or "legacy")
            elif era == "sse" and remembered != "sse":
                await eras.set(spec.target(), "sse")
            return connection
        reason = describe_failure(first_failure) if first_failure else "unknown error"
        logger.warning("MCP server unreachable: server=%s reason=%s", spec.label, reason)
        raise ServerUnreachable(spec.label, reason)

    async def _open_with(self, spec: ServerSpec, era: Any) -> ServerConnection:
        assert self._tg is not None, "RunConnections must be entered"
        callbacks = self._callbacks(spec)
        client = self._connector.client(spec, era, callbacks)
        await self._tg.start(self._hold, client, spec.label)
        callbacks.watch_undeclared(client.session)
        if spec.known_tools is not None:
            # The conversation already holds this server's list (OpenAI reuses it too). The SDK
            # must know the tools to call them on a 2026-07-28 server without re-listing.
            tools = absorb_tool_listing(client.session, list(spec.known_tools))
        else:
            with anyio.fail_after(self._list_timeout_s):
                tools = await self._list_tools(client)
        if spec.allowed_tools is not None:
            tools = [t for t in tools if spec.allowed_tools.matches(t)]
        return ServerConnection(
            spec, client, tools, listed=spec.known_tools is None, callbacks=callbacks
        )

    async def _hold(
        self,
        client: Client,
        label: str,
        *,
        task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED,
    ) -> None:
        """Open the session, hand it over, keep it until the run ends, then close it here.

        Shielded: when a run is cancelled (its client hung up), the session must outlive the
        cancellation long enough to tell the server (``notifications/cancelled`` on a
        2025-11-25 session) and to close cleanly. Deadlines bound both phases.
        """
        started = False
        deadline = anyio.current_time() + self._list_timeout_s
        with anyio.CancelScope(deadline=deadline, shield=True) as scope:
            try:
                async with client:
                    scope.deadline = math.inf
                    task_status.started()
                    started = True
                    await self._release.wait()
                    scope.deadline = anyio.current_time() + _CLOSE_TIMEOUT_S
            except Exception as exc:
                if not started:
                    raise
                logger.info(
                    "MCP session closed with an error: server=%s reason=%s",
                    label,
                    describe_failure(exc),
                )
        if not started:
            raise TimeoutError(f"connecting took longer than {self._list_timeout_s:g}s")

    @staticmethod
    async def _list_tools(client: Client) -> list[types.Tool]:
        tools: list[types.Tool] = []
        cursor: str | None = None
        for _ in range(_LIST_PAGE_CAP):
            page = await client.list_tools(cursor=cursor)
            tools.extend(page.tools)
            cursor = page.next_cursor
            if cursor is None:
                break
        return tools
