"""The MCP sessions of one run: leased warm or opened concurrently, listed, given back.

Sessions live in the process's ``SessionPool`` (``app/mcp/sessions/pool.py``): a run first
takes a warm session for the same caller key, server, credentials and declaration, and opens one
(by the era policy, ``app/mcp/sessions/eras.py``) only when there is none. A session is handed to
the run only once its tools are listed; a failed attempt is closed at once. When the run ends,
its sessions go back to the pool if it ended cleanly, and are closed otherwise.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable, Sequence
from types import TracebackType

import anyio
import mcp_types as types
from mcp import Client

from app.concurrency import each_concurrently
from app.errors import AuthorizationRequired, ServerUnreachable
from app.mcp.failures import describe_failure
from app.mcp.features.callbacks import Sampler, ServerCallbacks
from app.mcp.features.tasks import takes_task_calls
from app.mcp.schemas import output_validator
from app.mcp.servers import ServerSpec
from app.mcp.sessions.eras import Attempt, attempts, to_remember
from app.mcp.sessions.pool import LISTING_REUSE_S, Lease, SessionPool, pool_key
from app.mcp.sessions.sdk_internals import (
    absorb_tool_listing,
    intercept_notifications,
    use_output_validators,
)
from app.mcp.sessions.session import ServerSession
from app.mcp.transport.clients import McpClients, TransportWatch
from app.mcp.transport.oauth import auth_failure

logger = logging.getLogger(__name__)

"""Stops a server whose tools/list paginates forever."""


def _offers_tools(client: Client) -> bool:
    """Whether the server declared the ``tools`` capability: a server that offers only prompts
    or resources is a server with no tools here, not a failure."""
    capabilities = client.session.server_capabilities
    return capabilities is None or capabilities.tools is not None


class ListingTooLarge(Exception):
    """A server's tool list is past ``ListingBounds``."""


class RunSessions:
    """The MCP sessions of one run; leaving it gives them back (or closes them)."""

    def __init__(
        self,
        clients: McpClients,
        pool: SessionPool,
        *,
        owner: str,
        list_timeout_s: float,
        sampler_for: Callable[[ServerSpec], Sampler | None] = lambda spec: None,
    ) -> None:
        self._clients = clients
        self._pool = pool
        self._owner = owner
        """The caller's API key id: sessions never serve another key."""
        self._list_timeout_s = list_timeout_s
        self._sampler_for = sampler_for
        self._leases: list[Lease] = []

    async def __aenter__(self) -> RunSessions:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> bool:
        for lease in self._leases:
            # A run cut short (client gone, an error) may have left requests in flight.
            clean = exc_type is None and lease.callbacks.calls_in_flight == 0
            self._pool.give_back(lease, reusable=clean)
        self._leases.clear()
        return False

    async def open_all(self, specs: Sequence[ServerSpec]) -> list[ServerSession]:
        """Connect to every server and list its tools, concurrently.

        Raises:
            ServerUnreachable: for the first server (in request order) that failed.
        """
        results: list[ServerSession | ServerUnreachable | None] = [None] * len(specs)

        async def open_one(index: int, spec: ServerSpec) -> None:
            try:
                results[index] = await self._open(spec)
            except ServerUnreachable as exc:
                results[index] = exc

        await each_concurrently(specs, open_one)
        for result in results:
            if isinstance(result, ServerUnreachable):
                raise result
        return [r for r in results if isinstance(r, ServerSession)]

    async def _open(self, spec: ServerSpec) -> ServerSession:
        """A warm session if the pool has one that still answers, else a new one."""
        sampler = self._sampler_for(spec)
        callbacks = ServerCallbacks(
            spec.label, sampler=sampler, declare_elicitation=spec.elicitation
        )
        key = pool_key(spec, self._owner, callbacks.declaration())
        while (lease := self._pool.take(key)) is not None:
            lease.callbacks.bind(spec.label, sampler)
            self._leases.append(lease)
            try:
                tools, listed = await self._tools(spec, lease)
            except Exception as exc:  # noqa: BLE001 - a stale session: try the next, or open one
                lease.drop()
                logger.info(
                    "warm MCP session dropped: server=%s reason=%s",
                    spec.label,
                    describe_failure(exc),
                )
                continue
            return ServerSession(spec, lease, tools, listed=listed, renew=self._renew)
        lease, tools, listed = await self._connect(spec, callbacks, key)
        return ServerSession(spec, lease, tools, listed=listed, renew=self._renew)

    async def _renew(self, spec: ServerSpec, stale: Lease) -> Lease:
        """A new session in place of a warm one the server has forgotten; its callbacks (the
        run's sampler, notes and counts) and the tools the run was offered carry on."""
        stale.drop()
        lease, _, _ = await self._connect(spec, stale.callbacks, stale.key)
        return lease

    async def _connect(
        self, spec: ServerSpec, callbacks: ServerCallbacks, key: str
    ) -> tuple[Lease, list[types.Tool], bool]:
        """Try the era policy's attempts in order (see ``app/mcp/sessions/eras.py``)."""
        eras = self._clients.eras
        remembered = await eras.get(spec.target()) if spec.transport != "stdio" else None
        first_failure: BaseException | None = None
        auth = self._clients.auth_for(spec)
        for attempt in attempts(spec, remembered):
            watch = TransportWatch()
            try:
                async with auth.first_token() if auth else contextlib.nullcontext():
                    lease, tools, listed = await self._attempt(spec, attempt, watch, callbacks, key)
            except ListingTooLarge as exc:  # the server answered: no other era would help
                logger.warning("MCP server tool list too large: server=%s", spec.label)
                raise ServerUnreachable(spec.label, str(exc)) from exc
            except Exception as exc:
                if auth is not None and (why := auth_failure(watch.failure or exc)) is not None:
                    # Our own credentials were refused: say what the authorization server
                    # said (never the secret); no other era would fare better.
                    logger.warning("MCP server authorization failed: server=%s", spec.label)
                    raise ServerUnreachable(spec.label, why) from exc
                if watch.challenges:
                    # The server is there and speaks this era; the caller lacks authorization.
                    # Nothing else to try, and nothing to forget.
                    challenge = watch.challenges[-1]
                    logger.warning("MCP server requires authorization: server=%s", spec.label)
                    raise AuthorizationRequired(
                        spec.label, challenge.get("resource_metadata"), challenge.get("scope")
                    ) from exc
                if attempt.remembered:
                    await eras.forget(spec.target())  # stale (the server was redeployed)
                elif first_failure is None:
                    first_failure = exc
                continue
            if (era := to_remember(spec, attempt, lease.client.session)) is not None:
                await eras.set(spec.target(), era)
            return lease, tools, listed
        reason = describe_failure(first_failure) if first_failure else "unknown error"
        logger.warning("MCP server unreachable: server=%s reason=%s", spec.label, reason)
        raise ServerUnreachable(spec.label, reason)

    async def _attempt(
        self,
        spec: ServerSpec,
        attempt: Attempt,
        watch: TransportWatch,
        callbacks: ServerCallbacks,
        key: str,
    ) -> tuple[Lease, list[types.Tool], bool]:
        client, route = self._clients.client(spec, attempt, callbacks, watch)
        lease = await self._pool.open(
            key,
            client,
            callbacks,
            watch,
            route=route,
            label=spec.label,
            timeout_s=self._list_timeout_s,
        )
        self._leases.append(lease)
        try:
            callbacks.watch_undeclared(client.session)
            intercept_notifications(client.session, callbacks.saw_notification)
            use_output_validators(client.session, output_validator)
            tools, listed = await self._tools(spec, lease)
        except BaseException:
            lease.drop()  # a failed attempt does not stay open until the run ends
            raise
        return lease, tools, listed

    async def _tools(self, spec: ServerSpec, lease: Lease) -> tuple[list[types.Tool], bool]:
        """The server's tools for this run, and whether they were listed (False: they came from
        the conversation)."""
        client, listed = lease.client, spec.known_tools is None
        if not _offers_tools(client):
            logger.info("MCP server offers no tools: server=%s", spec.label)
            tools: list[types.Tool] = []
        elif spec.known_tools is not None and not takes_task_calls(client.server_capabilities):
            # The conversation already holds this server's list (OpenAI reuses it too): the
            # SDK must know the tools to call them on a 2026-07-28 server without listing.
            tools = absorb_tool_listing(client.session, list(spec.known_tools))
        else:
            # (A 2025-11-25 server that runs tools as tasks is listed even so: which tools
            # need a task is in the listing, not in the conversation's copy of it.)
            reuse_s = min(LISTING_REUSE_S, self._clients.default_ttl_s)
            if (recent := lease.recent_listing(reuse_s)) is not None:
                tools = recent
            else:
                # Said changed: past the shared cache, whose eviction (the SDK's) may not have
                # landed yet.
                refresh = lease.callbacks.tools_changed
                with anyio.fail_after(self._list_timeout_s):
                    tools = await self._list_tools(client, refresh=refresh)
                lease.remember_listing(tools)
            listed = True
        if spec.allowed_tools is not None:
            tools = [t for t in tools if spec.allowed_tools.matches(t)]
        return tools, listed

    async def _list_tools(self, client: Client, *, refresh: bool) -> list[types.Tool]:
        """Every page of the server's tools, within ``listing_bounds`` (the list timeout
        bounds a server whose cursors never end)."""
        bounds = self._clients.listing_bounds
        tools: list[types.Tool] = []
        size = 0
        cursor: str | None = None
        while True:
            page = await client.list_tools(
                cursor=cursor, cache_mode="refresh" if refresh else "use"
            )
            tools.extend(page.tools)
            size += len(page.model_dump_json())
            if len(tools) > bounds.max_tools or size > bounds.max_bytes:
                raise ListingTooLarge(
                    f"The server lists more than {bounds.max_tools} tools or "
                    f"{bounds.max_bytes} bytes of them (TOOLBRIDGE_MCP_MAX_LISTED_TOOLS, "
                    "TOOLBRIDGE_MCP_MAX_LISTING_BYTES)."
                )
            cursor = page.next_cursor
            if cursor is None:
                return tools
