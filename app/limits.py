"""What one caller key may hold at once on this replica: runs in progress, and connections to
the MCP servers it names by URL. One tenant's burst or slow servers then wait on its own
limits, not on the process's (the shared pool has 512 connections in all).

Counted per replica, in memory: with N replicas a key may hold N times these (documented).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import anyio

from app.errors import TooManyRuns


class KeyLimits:
    def __init__(self, *, max_runs: int, max_connections: int) -> None:
        self.max_runs = max_runs
        self.max_connections = max_connections
        self._runs: dict[str, int] = {}
        self._connections: dict[str, anyio.Semaphore] = {}

    @contextmanager
    def run(self, key_id: str) -> Iterator[None]:
        """Hold one of the key's run slots; ``TooManyRuns`` (429) when none is free."""
        held = self._runs.get(key_id, 0)
        if held >= self.max_runs:
            raise TooManyRuns(self.max_runs)
        self._runs[key_id] = held + 1
        try:
            yield
        finally:
            left = self._runs[key_id] - 1
            if left:
                self._runs[key_id] = left
            else:
                del self._runs[key_id]

    def connection_slots(self, key_id: str) -> anyio.Semaphore:
        """The key's slots for requests to servers it named (each held until its response
        body is closed; a session's GET stream is one per session and holds none)."""
        slots = self._connections.get(key_id)
        if slots is None:
            slots = self._connections[key_id] = anyio.Semaphore(self.max_connections)
        return slots
