"""The MCP sessions of one run: opened concurrently, listed, kept until the run ends.

Each session lives in its own task inside the run's task group: AnyIO cancel scopes must be
entered and exited by the same task, and keeping each session in a task of its own lets several
servers connect concurrently while the run calls them from wherever it likes. A session is
handed to the run only once its tools are listed; a failed attempt is closed at once.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Sequence
from contextlib import AsyncExitStack
from types import TracebackType

import anyio
import mcp_types as types
from anyio.abc import TaskGroup, TaskStatus
from mcp import Client

from app.errors import AuthorizationRequired, ServerUnreachable
from app.mcp.callbacks import Sampler, ServerCallbacks
from app.mcp.clients import Challenges, McpClients
from app.mcp.eras import Attempt, attempts, to_remember
from app.mcp.sdk_internals import absorb_tool_listing
from app.mcp.servers import ServerSpec
from app.mcp.session import ServerSession, describe_failure
from app.mcp.tasks import takes_task_calls

logger = logging.getLogger(__name__)

_LIST_PAGE_CAP = 100
"""Stops a server whose tools/list paginates forever."""
_CLOSE_TIMEOUT_S = 5.0
"""A server that hangs on session teardown cannot hold a finished run open longer."""


def _offers_tools(client: Client) -> bool:
    """Whether the server declared the ``tools`` capability: a server that offers only prompts
    or resources is a server with no tools here, not a failure."""
    capabilities = client.session.server_capabilities
    return capabilities is None or capabilities.tools is not None


class RunSessions:
    """The MCP sessions of one run; leaving it closes them all (on the task that opened it)."""

    def __init__(
        self,
        clients: McpClients,
        *,
        list_timeout_s: float,
        sampler_for: Callable[[ServerSpec], Sampler | None] = lambda spec: None,
    ) -> None:
        self._clients = clients
        self._list_timeout_s = list_timeout_s
        self._sampler_for = sampler_for
        self._closers: list[anyio.Event] = []
        self._stack = AsyncExitStack()
        self._tg: TaskGroup | None = None

    async def __aenter__(self) -> RunSessions:
        self._tg = await self._stack.enter_async_context(anyio.create_task_group())
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> bool:
        for close in self._closers:
            close.set()
        try:
            await self._stack.__aexit__(exc_type, exc, tb)
        except BaseExceptionGroup as group:
            # The task group wraps the run's own exception; let the original propagate as is.
            if exc is None or any(inner is not exc for inner in group.exceptions):
                raise
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

        async with anyio.create_task_group() as tg:
            for index, spec in enumerate(specs):
                tg.start_soon(open_one, index, spec)
        for result in results:
            if isinstance(result, ServerUnreachable):
                raise result
        return [r for r in results if isinstance(r, ServerSession)]

    async def _open(self, spec: ServerSpec) -> ServerSession:
        """Try the era policy's attempts in order (see ``app/mcp/eras``)."""
        eras = self._clients.eras
        remembered = await eras.get(spec.target()) if spec.transport != "stdio" else None
        first_failure: BaseException | None = None
        for attempt in attempts(spec, remembered):
            challenges = Challenges()
            try:
                session, client = await self._open_with(spec, attempt, challenges)
            except Exception as exc:
                if challenges.seen:
                    # The server is there and speaks this era; the caller lacks authorization.
                    # Nothing else to try, and nothing to forget.
                    challenge = challenges.seen[-1]
                    logger.warning("MCP server requires authorization: server=%s", spec.label)
                    raise AuthorizationRequired(
                        spec.label, challenge.get("resource_metadata"), challenge.get("scope")
                    ) from exc
                if attempt.remembered:
                    await eras.forget(spec.target())  # stale (the server was redeployed)
                elif first_failure is None:
                    first_failure = exc
                continue
            if (era := to_remember(spec, attempt, client.session)) is not None:
                await eras.set(spec.target(), era)
            return session
        reason = describe_failure(first_failure) if first_failure else "unknown error"
        logger.warning("MCP server unreachable: server=%s reason=%s", spec.label, reason)
        raise ServerUnreachable(spec.label, reason)

    async def _open_with(
        self, spec: ServerSpec, attempt: Attempt, challenges: Challenges
    ) -> tuple[ServerSession, Client]:
        assert self._tg is not None, "RunSessions must be entered"
        callbacks = ServerCallbacks(
            spec.label, sampler=self._sampler_for(spec), declare_elicitation=spec.elicitation
        )
        client = self._clients.client(spec, attempt, callbacks, challenges)
        close = anyio.Event()
        self._closers.append(close)
        await self._tg.start(self._keep_open, client, spec.label, close)
        listed = spec.known_tools is None  # False: the tools came from the conversation
        try:
            callbacks.watch_undeclared(client.session)
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
                with anyio.fail_after(self._list_timeout_s):
                    tools = await self._list_tools(client)
                listed = True
        except BaseException:
            close.set()  # a failed attempt does not stay open until the run ends
            raise
        if spec.allowed_tools is not None:
            tools = [t for t in tools if spec.allowed_tools.matches(t)]
        session = ServerSession(spec, client, tools, listed=listed, callbacks=callbacks)
        return session, client

    async def _keep_open(
        self,
        client: Client,
        label: str,
        close: anyio.Event,
        *,
        task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED,
    ) -> None:
        """Open the session, hand it over, keep it until ``close`` is set, then close it here.

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
                    await close.wait()
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
