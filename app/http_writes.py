"""The HTTP protocol toolbridge serves with: uvicorn's (httptools), with its writes gathered.

uvicorn writes a response's status line and headers, then each piece of its body, each with a
``write`` on the socket at once. Over loopback, or any local network, a write is dear: the
kernel sends a segment and wakes the reader in the writer's time (11 to 15 µs of the writer's
CPU a write, measured: ``docs/performance.md``). Here the writes
made in one turn of the event loop reach the socket as one, at the end of that turn: headers
and body of a JSON answer together; in a stream, the events a step of the run made together.
Nothing waits for a later turn, so a stream's latency is unchanged.
"""

from __future__ import annotations

import asyncio
from typing import Any

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol


class GatheredWrites:
    """A transport whose writes in one turn of the loop go to ``transport`` as one."""

    def __init__(self, transport: Any, loop: asyncio.AbstractEventLoop) -> None:
        self._transport = transport
        self._loop = loop
        self._pending: list[bytes] = []

    def write(self, data: bytes) -> None:
        if not self._pending:
            self._loop.call_soon(self._flush)
        self._pending.append(data)

    def _flush(self) -> None:
        pending, self._pending = self._pending, []
        if pending and not self._transport.is_closing():
            self._transport.write(pending[0] if len(pending) == 1 else b"".join(pending))

    def close(self) -> None:
        self._flush()  # what was written before the close goes first
        self._transport.close()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._transport, name)


class GatheredWritesProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol on a ``GatheredWrites`` transport."""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        super().connection_made(GatheredWrites(transport, self.loop))  # type: ignore[arg-type]
