"""Registered stdio servers: started with the ``mcp`` SDK, their stderr logged as our JSON lines.

A server's stderr is its log. Written raw to ours it breaks every JSON line parser downstream,
so each line goes through logging instead, on ``toolbridge.mcp.stderr`` with the server's
label, at the level the operator chose (``TOOLBRIDGE_STDIO_STDERR_LEVEL``).
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from mcp import StdioServerParameters
from mcp.client.stdio import stdio_client

logger = logging.getLogger("toolbridge.mcp.stderr")

_MAX_LINE = 8192
"""Longer lines are cut: one server must not flood the log with a single line."""


def _pump(reader: Any, label: str, level: int) -> None:
    with reader:
        for raw in reader:
            line = raw[:_MAX_LINE].decode("utf-8", "replace").rstrip("\r\n")
            if line:
                logger.log(level, "%s", line, extra={"server": label})


@asynccontextmanager
async def stdio_transport(
    params: StdioServerParameters, label: str, level: int
) -> AsyncIterator[Any]:
    """The SDK's stdio transport, with the child's stderr pumped into our log by a thread
    (it ends at end of file: when the child and our copy of the pipe are both gone)."""
    read_fd, write_fd = os.pipe()
    reader = os.fdopen(read_fd, "rb")
    threading.Thread(
        target=_pump, args=(reader, label, level), name=f"stderr-{label}", daemon=True
    ).start()
    with os.fdopen(write_fd, "w") as errlog:
        async with stdio_client(params, errlog=errlog) as streams:
            yield streams
