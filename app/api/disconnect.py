"""A client that hangs up cancels its run, streamed or not.

Streams watch for the disconnect themselves (``sse.EventStreamResponse``); a non-streamed
request runs its work here, racing it against ``http.disconnect``, so in-flight model and MCP
calls stop, MCP sessions close and every ``finally`` runs.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import aclosing
from typing import Any

import anyio
from fastapi import Request
from fastapi.responses import Response

logger = logging.getLogger(__name__)

CLIENT_CLOSED = 499
"""Nginx's status for a client that closed the request; nobody receives it."""


async def drain(events: AsyncIterator[Any], absorb: Callable[[Any], object]) -> None:
    """Feed every event of a run to a renderer (the non-streamed path)."""
    async with aclosing(events) as items:
        async for event in items:
            absorb(event)


async def unless_disconnected(
    request: Request, work: Callable[[], Awaitable[Response]]
) -> Response:
    """Run ``work``; if the client disconnects first, cancel it."""
    result: Response | None = None
    failure: Exception | None = None

    async def run() -> None:
        nonlocal result, failure
        try:
            result = await work()
        except Exception as exc:  # noqa: BLE001 - re-raised below, outside the task group
            failure = exc
        tg.cancel_scope.cancel()

    async def watch() -> None:
        while (await request.receive())["type"] != "http.disconnect":
            pass
        logger.info("client disconnected: run cancelled")
        tg.cancel_scope.cancel()

    async with anyio.create_task_group() as tg:
        tg.start_soon(run)
        tg.start_soon(watch)
    if failure is not None:
        raise failure  # as itself, not wrapped in an exception group
    return result if result is not None else Response(status_code=CLIENT_CLOSED)
