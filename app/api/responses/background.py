"""Background responses (``background: true``): the run goes on in this process after the
request is answered, and every replica can read it, follow its stream and cancel it
(``app/store/background.py``).

- ``create`` answers at once with the Response ``queued`` (or, with ``stream: true``, follows
  its stream events as they are recorded), and runs it in the app's task group.
- ``GET /v1/responses/{id}`` gives the Response as it stands; with ``stream=true`` it replays
  the stream events after ``starting_after`` and follows the rest (a dropped connection loses
  nothing: resume from the last ``sequence_number`` seen).
- ``POST /v1/responses/{id}/cancel`` asks the running replica to stop: the run is cancelled
  (in-flight MCP calls too) and the Response ends ``cancelled``.

A finished background response is stored like any other (``store`` must be true), so it is
continued with ``previous_response_id`` and listed with ``input_items`` as usual.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import AsyncGenerator, Awaitable, Callable
from typing import Any

import anyio
from anyio.abc import TaskGroup

from app.api.responses.render import ResponseRenderer
from app.api.sse import sse_event
from app.engine.events import RunEvent
from app.store.background import TERMINAL, BackgroundStore

logger = logging.getLogger(__name__)

FOLLOW_POLL_S = 0.1
"""How often a follower looks for new events."""
WATCH_S = 1.0
"""How often (at most) a running replica looks for a cancellation and renews its lease."""


class BackgroundRuns:
    """Runs background responses in the app's task group (cancelled at shutdown: the
    responses then read ``failed``, since their lease lapses), at most ``max_running`` at
    once; the others wait ``queued`` for a slot, their lease renewed meanwhile."""

    def __init__(
        self, store: BackgroundStore, *, max_running: int, tasks: TaskGroup | None = None
    ) -> None:
        self.store = store
        self.tasks = tasks
        self._slots = anyio.CapacityLimiter(max_running)

    async def start(
        self,
        renderer: ResponseRenderer,
        owner: str,
        events: AsyncGenerator[RunEvent, None],
        before_done: Callable[[], Awaitable[None]],
        after: Callable[[], Awaitable[None]] | None = None,
        input_items: list[dict[str, Any]] | None = None,
    ) -> dict[str, Any]:
        """Record the response as queued and start its run; the queued Response.

        ``after``: runs once the run is over, however it ended, and also when it never started
        (refused here, or cancelled while queued: closing ``events`` then runs none of its
        code). ``input_items``: listed while the response is not stored yet."""
        assert self.tasks is not None, "background runs need the app's task group"
        renderer.status = "queued"
        queued = renderer.response()
        try:
            await self.store.create(queued, owner, input_items)  # refused past the key's limit
        except BaseException:
            if after is not None:
                with anyio.CancelScope(shield=True):
                    await after()
            raise
        self.tasks.start_soon(self._run, renderer, owner, events, before_done, after)
        return queued

    async def _run(
        self,
        renderer: ResponseRenderer,
        owner: str,
        events: AsyncGenerator[RunEvent, None],
        before_done: Callable[[], Awaitable[None]],
        after: Callable[[], Awaitable[None]] | None,
    ) -> None:
        store = self.store
        try:
            with anyio.CancelScope() as scope:
                async with anyio.create_task_group() as watch:
                    watch.start_soon(self._watch, renderer.id, owner, scope)
                    try:
                        async with self._slots:
                            renderer.status = "in_progress"
                            await store.record(renderer.response(), renderer.start())
                            async for event in events:
                                await store.record(renderer.response(), renderer.events_for(event))
                            await before_done()  # stored, as any response, before it is done
                            await store.record(renderer.response(), renderer.final_events())
                    except Exception as exc:  # noqa: BLE001 - the response fails, said so
                        await store.record(renderer.response(), renderer.failure_events(exc))
                        await before_done()
                    finally:
                        watch.cancel_scope.cancel()
            if scope.cancelled_caught:
                with anyio.CancelScope(shield=True):
                    renderer.status = "cancelled"
                    await before_done()
                    await store.record(renderer.response(), [])
        except Exception:
            logger.exception("background response could not be recorded: id=%s", renderer.id)
        finally:
            with anyio.CancelScope(shield=True):
                await events.aclose()
                if after is not None:
                    try:
                        await after()
                    except Exception:  # what it frees lapses by itself instead
                        logger.exception("background response %s: clean-up failed", renderer.id)
                with contextlib.suppress(Exception):  # else its entry lapses with the lease
                    await store.finish(renderer.id, owner)

    async def _watch(self, response_id: str, owner: str, run: anyio.CancelScope) -> None:
        """Renew the lease; cancel the run once someone asked, or once the lease was lost."""
        while True:
            await anyio.sleep(min(WATCH_S, self.store.lease_ms / 3000))
            if not await self.store.keep_running(response_id, owner):
                run.cancel()
                return

    async def follow(
        self, response_id: str, owner: str, starting_after: int
    ) -> AsyncGenerator[str, None]:
        """The stream events after ``starting_after``, as SSE, until the response is done."""
        seen = starting_after
        while True:
            # The state first: events and state are written together, so once it reads
            # done, the events read next are the last ones.
            state = await self.store.state(response_id, owner)
            for event in await self.store.events_after(response_id, seen):
                seen = int(event["sequence_number"])
                yield sse_event(event, name=event["type"])
            if state is None or state["status"] in TERMINAL:
                return
            await anyio.sleep(FOLLOW_POLL_S)
