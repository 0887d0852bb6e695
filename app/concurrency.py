"""Running several awaitables at once, without paying for a task when there is one."""

from __future__ import annotations

from collections.abc import Callable, Coroutine, Sequence
from typing import Any, TypeVar

import anyio

T = TypeVar("T")


async def each_concurrently(
    items: Sequence[T], work: Callable[[int, T], Coroutine[Any, Any, None]]
) -> None:
    """``work(index, item)`` for every item, concurrently; a single item runs in the caller's
    task (the usual case: one tool call, one server; spawning a task costs CPU per run)."""
    if len(items) == 1:
        await work(0, items[0])
        return
    async with anyio.create_task_group() as tg:
        for index, item in enumerate(items):
            tg.start_soon(work, index, item)
