"""ASGI middleware: request ids and the request body limit, before any route runs."""

from __future__ import annotations

import json
import logging
import re
import time

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from app.api.errors import envelope
from app.ids import run_scoped_id
from app.logs import request_id
from app.metrics import API_IN_FLIGHT, REQUESTS, series

logger = logging.getLogger("toolbridge.http")
_VALID_ID = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")
INTERNAL_PREFIX = "/demo/"
"""The demo's model and MCP server, called by this process itself: not client traffic."""


class RequestIdMiddleware:
    """Accept a sane ``X-Request-ID`` or make one; return it and tag every log line with it."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        given = dict(scope["headers"]).get(b"x-request-id", b"").decode("latin-1")
        rid = given if _VALID_ID.match(given) else f"req_{run_scoped_id()}"
        token = request_id.set(rid)
        started, status = time.monotonic(), 500

        async def send_with_id(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                message["headers"] = [*message.get("headers", []), (b"x-request-id", rid.encode())]
            await send(message)

        in_api = scope["path"].startswith("/v1/")
        if in_api:
            API_IN_FLIGHT.inc()
        try:
            await self.app(scope, receive, send_with_id)
        finally:
            if in_api:
                API_IN_FLIGHT.dec()
            # The path only: a query string could carry something a caller considers secret.
            elapsed_ms = (time.monotonic() - started) * 1000
            logger.info("%s %s %d %.1fms", scope["method"], scope["path"], status, elapsed_ms)
            if not scope["path"].startswith(INTERNAL_PREFIX):
                route = scope.get("route")  # the path template, so ids do not explode labels
                series(REQUESTS, getattr(route, "path", "unmatched"), str(status)).inc()
            request_id.reset(token)


def replay(messages: list[Message], receive: Receive) -> Receive:
    """``receive`` that gives ``messages`` first, then what ``receive`` gives."""
    pending = list(messages)

    async def replaying() -> Message:
        return pending.pop(0) if pending else await receive()

    return replaying


class BodyLimitMiddleware:
    """Refuse request bodies over ``max_bytes`` with 413 in OpenAI's envelope."""

    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = dict(scope["headers"]).get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > self.max_bytes:
            await self._refuse(send)
            return
        # Read the body here (it is small by definition), so a chunked body that grows too
        # large is refused before any route sees it.
        messages: list[Message] = []
        received = 0
        while True:
            message = await receive()
            messages.append(message)
            received += len(message.get("body", b""))
            if received > self.max_bytes:
                await self._refuse(send)
                return
            if message["type"] != "http.request" or not message.get("more_body"):
                break

        await self.app(scope, replay(messages, receive), send)

    def _message(self) -> str:
        return f"Request body is larger than {self.max_bytes} bytes."

    async def _refuse(self, send: Send) -> None:
        body = envelope(self._message(), "invalid_request_error", code="request_too_large")
        await send(
            {
                "type": "http.response.start",
                "status": 413,
                "headers": [(b"content-type", b"application/json")],
            }
        )
        await send({"type": "http.response.body", "body": json.dumps(body).encode()})
