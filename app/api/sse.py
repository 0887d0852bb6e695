"""Server-sent events that start only once the run has started well.

The rendered items are read and written in the response's own task (so the run's MCP sessions
open and close on one task). The first item decides the response: an error before it becomes an
ordinary JSON error with its status (a dead MCP server is a 424, not a 200 stream); after it,
errors become in-stream events. While the run is quiet (tools running), a second task sends
what the servers report (``ProgressFeed``) and, when nothing came for a while, comment lines
that keep proxies from closing the connection. A client that disconnects cancels the run.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import AsyncGenerator, Callable
from contextlib import aclosing
from typing import Any

import anyio
from anyio import CancelScope
from starlette.responses import Response
from starlette.types import Receive, Scope, Send

from app.api.errors import error_response_body
from app.engine.events import McpCallProgress, ProgressFeed
from app.json_text import to_json
from app.mcp.features.notes import TaskState

logger = logging.getLogger(__name__)

KEEPALIVE = ": keep-alive\n\n"
DONE = "data: [DONE]\n\n"
"""Chat Completions' end of stream."""


def sse_comment(text: str) -> str:
    """A comment line: SSE clients (the OpenAI SDKs among them) ignore it; people can read it."""
    return ": " + " ".join(text.split()) + "\n\n"


def progress_text(event: McpCallProgress) -> str:
    """``progress <call id> 3/10 message`` (the total and message when the server gave them), or
    ``task <call id> working message`` for a call that runs as an MCP task."""
    update = event.update
    if isinstance(update, TaskState):
        return " ".join(filter(None, ["task", event.call_id, update.status, update.message]))
    amount = f"{update.progress:g}" + (f"/{update.total:g}" if update.total is not None else "")
    return " ".join(filter(None, ["progress", event.call_id, amount, update.message]))


def sse_event(data: dict[str, Any], *, name: str | None = None) -> str:
    """One server-sent event carrying ``data`` as JSON (with an ``event:`` line if named)."""
    head = f"event: {name}\n" if name else ""
    return f"{head}data: {to_json(data)}\n\n"


class EventStreamResponse(Response):
    """An ASGI response streaming ``items`` (already formatted SSE text)."""

    def __init__(
        self,
        items: AsyncGenerator[str, None],
        *,
        keepalive_s: float,
        stream_error: Callable[[Exception], str],
        closing: Callable[[], str] = str,
        progress: ProgressFeed | None = None,
        render_progress: Callable[[McpCallProgress], list[str]] | None = None,
    ) -> None:
        """``closing``: the text after the last item, rendered once the items ended well and
        sent with the end of the body (one write, not two)."""
        super().__init__(media_type="text/event-stream")
        self._items = items
        self._keepalive_s = keepalive_s
        self._stream_error = stream_error
        self._closing = closing
        self._progress = progress
        self._render_progress = render_progress

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        # The items are read and written in this task (one task for the run, from its sessions'
        # opening to their closing; and no hand-over between tasks per item: CPU per run). The
        # disconnect watcher and the keep-alive are bare asyncio tasks: an anyio task group
        # for them cost more CPU per stream than the rest of this class (profiled).
        with CancelScope() as run_scope:
            watcher = asyncio.get_running_loop().create_task(
                cancel_on_disconnect(receive, run_scope)
            )
            try:
                await self._write(send)
            finally:
                watcher.cancel()

    async def _write(self, send: Send) -> None:
        async with aclosing(self._items) as items:
            try:
                first = await anext(items, "")
            except Exception as exc:  # noqa: BLE001 - before the first item: an ordinary error
                status, body = error_response_body(exc)
                await send(
                    {
                        "type": "http.response.start",
                        "status": status,
                        "headers": [(b"content-type", b"application/json")],
                    }
                )
                await send({"type": "http.response.body", "body": json.dumps(body).encode()})
                return
            await send(
                {
                    "type": "http.response.start",
                    "status": 200,
                    "headers": [
                        (b"content-type", b"text/event-stream; charset=utf-8"),
                        (b"cache-control", b"no-cache"),
                        (b"x-accel-buffering", b"no"),
                    ],
                }
            )
            quiet = _KeepAlive(send, self._keepalive_s, self._progress, self._render_progress)
            await quiet.body(first)
            keeping_alive = asyncio.get_running_loop().create_task(quiet.run())
            try:
                async for item in items:
                    await quiet.body(quiet.pending() + item)  # what came first goes first
                last = quiet.pending() + self._closing()
            except Exception as exc:  # noqa: BLE001 - boundary: the run's failure, in-stream
                last = self._stream_error(exc)
            finally:
                keeping_alive.cancel()
        await send({"type": "http.response.body", "body": last.encode(), "more_body": False})


async def cancel_on_disconnect(receive: Receive, scope: CancelScope) -> None:
    """Cancel ``scope`` (the run) when the client disconnects."""
    try:
        while (await receive())["type"] != "http.disconnect":
            pass
    except Exception:  # the server's receive failed: nothing to watch
        logger.debug("could not watch for a disconnect", exc_info=True)
        return
    logger.info("client disconnected: run cancelled")
    scope.cancel()


class _KeepAlive:
    """Writes the stream's items; while they pause, the servers' progress as it arrives, and a
    comment line whenever ``every_s`` passed without a write."""

    def __init__(
        self,
        send: Send,
        every_s: float,
        progress: ProgressFeed | None,
        render_progress: Callable[[McpCallProgress], list[str]] | None,
    ) -> None:
        self._send = send
        self._every_s = every_s
        self._progress = progress
        self._render_progress = render_progress
        # The loop's own clock (what anyio's is): ``anyio.current_time`` finds the backend
        # first, a visible share of each write (profiled).
        self._now = asyncio.get_running_loop().time
        self._last = self._now()

    async def body(self, text: str) -> None:
        self._last = self._now()
        await self._send({"type": "http.response.body", "body": text.encode(), "more_body": True})

    def pending(self) -> str:
        """The progress that arrived since the last write, as SSE text."""
        if not self._progress or self._render_progress is None:
            return ""  # nothing arrived (the usual case, checked before every write)
        return "".join(
            text for update in self._progress.take() for text in self._render_progress(update)
        )

    async def run(self) -> None:
        """Until cancelled (by the writer when its items end). A write that fails ends it: the
        writer's next write fails the same way, or the disconnect watcher cancels the run."""
        try:
            while True:
                quiet_for = max(0.0, self._last + self._every_s - self._now())
                if self._progress is None:
                    await anyio.sleep(quiet_for)
                else:
                    with anyio.move_on_after(quiet_for):
                        await self._progress.arrived()
                    if text := self.pending():
                        await self.body(text)
                        continue
                if self._now() - self._last >= self._every_s:
                    await self.body(KEEPALIVE)
        except Exception:  # a bare task: nobody else would hear of it
            logger.debug("keep-alive write failed", exc_info=True)
