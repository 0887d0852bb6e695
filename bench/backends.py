"""The benchmark's backends in one process: the scripted model and two demo MCP servers
(2026-07-28 and 2025-11-25), each counting the HTTP requests it receives.

Prints one JSON line with their URLs, then serves until killed.
"""

from __future__ import annotations

import json
import logging
import sys
import threading
import time
from collections import Counter
from typing import Any

import anyio
import uvicorn
from starlette.applications import Starlette
from starlette.responses import JSONResponse
from starlette.routing import Route

from app.demo.mcp_server import build_demo_server
from app.demo.scripted_model import create_scripted_model_app
from app.store.embedded import free_port

COUNTS: Counter[str] = Counter()


def counted(name: str, app: Any) -> Any:
    async def wrapped(scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] == "http":
            COUNTS[name] += 1
        await app(scope, receive, send)

    return wrapped


def serve(app: Any) -> str:
    port = free_port()
    server = uvicorn.Server(
        uvicorn.Config(
            app,
            host="127.0.0.1",
            port=port,
            log_level="warning",
            lifespan="on",
            ws="none",
            access_log=False,
            # As hosted services keep idle connections: uvicorn's 5 s raced the floor's SDK
            # session on a saturated machine (a reused connection closed: ReadError, and the
            # session died with every run in flight on it).
            timeout_keep_alive=75,
        )
    )
    threading.Thread(target=server.run, daemon=True).start()
    while not server.started:
        time.sleep(0.02)
    return f"http://127.0.0.1:{port}"


def main() -> None:
    logging.disable(logging.INFO)  # the SDK logs every session at INFO
    modern = build_demo_server()

    @modern.tool()
    async def wait(seconds: float) -> str:
        """Answers after ``seconds`` (the concurrency sweep's slow tool)."""
        await anyio.sleep(seconds)
        return "waited"

    legacy = build_demo_server()
    legacy._lowlevel_server._request_handlers.pop("server/discover", None)

    async def stats(request: Any) -> JSONResponse:
        return JSONResponse(dict(COUNTS))

    urls = {
        "model": serve(create_scripted_model_app()),
        "modern": serve(counted("modern", modern.streamable_http_app())) + "/mcp",
        "legacy": serve(counted("legacy", legacy.streamable_http_app())) + "/mcp",
        "stats": serve(Starlette(routes=[Route("/", stats)])),
    }
    print(json.dumps(urls), flush=True)
    threading.Event().wait()


if __name__ == "__main__":
    sys.exit(main())
