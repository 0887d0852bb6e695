"""Serving a run, whichever endpoint renders it: JSON or server-sent events, a client that
hangs up, and errors that happen once a stream has started.

An endpoint supplies a ``Renderer``; ``serve`` drives the run's events through it. Streamed,
``sse.EventStreamResponse`` sends the pieces (an error before the first piece is an ordinary
JSON error with its status; after it, the renderer says how the error looks in its stream).
Not streamed, the run races against ``http.disconnect``, so a client that hangs up cancels it:
in-flight model and MCP calls stop, MCP sessions close and every ``finally`` runs.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator, Awaitable, Callable
from contextlib import aclosing
from typing import Any, Protocol

import anyio
from fastapi import Request
from fastapi.responses import Response

from app.api.sse import EventStreamResponse, cancel_on_disconnect
from app.engine.events import McpCallProgress, ProgressFeed, RunEvent
from app.json_text import json_bytes

CLIENT_CLOSED = 499
"""Nginx's status for a client that closed the request; nobody receives it."""


class Renderer(Protocol):
    """Turns a run's events into one endpoint's wire format."""

    def opening(self) -> list[str]:
        """SSE text sent before the run's first event."""
        ...

    def absorb(self, event: RunEvent) -> list[str]:
        """Take in an event; the SSE text it makes (none when not streaming)."""
        ...

    def progress(self, update: McpCallProgress) -> list[str]:
        """The SSE text a server's progress makes while tools run (none when not streaming)."""
        ...

    def closing(self) -> list[str]:
        """SSE text after the run's last event."""
        ...

    def failed(self, exc: Exception) -> str:
        """How a failure after the stream started looks in the stream."""
        ...

    def body(self) -> dict[str, Any]:
        """The whole answer, for a request that did not stream."""
        ...


Hook = Callable[[], Awaitable[None]]


async def serve(
    http: Request,
    renderer: Renderer,
    events: AsyncGenerator[RunEvent, None],
    *,
    stream: bool,
    keepalive_s: float,
    progress: ProgressFeed | None = None,
    before_reply: Hook | None = None,
) -> Response:
    """Answer with the run, streamed or not; ``progress``: the run's (streamed, its servers'
    progress is sent as it comes); ``before_reply`` runs once the run has finished well, before
    the caller hears of it (storing a response)."""
    if stream:
        return EventStreamResponse(
            _pieces(renderer, events, before_reply),
            keepalive_s=keepalive_s,
            stream_error=renderer.failed,
            closing=lambda: "".join(renderer.closing()),
            progress=progress,
            render_progress=renderer.progress,
        )

    async def complete() -> Response:
        async with aclosing(events) as items:
            async for event in items:
                renderer.absorb(event)
        if before_reply is not None:
            await before_reply()
        return OrjsonResponse(renderer.body())

    return await unless_disconnected(http, complete)


class OrjsonResponse(Response):
    """A JSON body serialised by orjson (``json_bytes``: the stdlib's encoder was a visible
    share of a run)."""

    media_type = "application/json"

    def render(self, content: Any) -> bytes:
        return json_bytes(content)


async def _pieces(
    renderer: Renderer, events: AsyncGenerator[RunEvent, None], before_reply: Hook | None
) -> AsyncGenerator[str, None]:
    # The events one run event makes go out together: one write, not one each.
    if opening := "".join(renderer.opening()):
        yield opening
    async with aclosing(events) as items:
        async for event in items:
            if pieces := "".join(renderer.absorb(event)):
                yield pieces
    if before_reply is not None:
        await before_reply()


async def unless_disconnected(
    request: Request, work: Callable[[], Awaitable[Response]]
) -> Response:
    """Run ``work`` in this task; if the client disconnects first, cancel it.

    The watcher is a bare asyncio task that cancels ``work``'s scope: a task group and an anyio
    task for it cost more CPU per request than the rest of this function (profiled)."""
    with anyio.CancelScope() as scope:
        watcher = asyncio.get_running_loop().create_task(
            cancel_on_disconnect(request.receive, scope)
        )
        try:
            return await work()
        finally:
            watcher.cancel()
    return Response(status_code=CLIENT_CLOSED)  # reached only when the scope was cancelled
