"""A tool call on a 2026-07-28 Streamable HTTP session: one POST, read here.

On that wire a call is one POST, answered by one JSON-RPC response: as JSON, or as an SSE
stream of the call's notifications and then the response. The ``mcp`` SDK sends it through
its dispatcher, two memory streams and a task per POST, then validates the answer with a
pydantic union adapter: about a quarter of toolbridge's CPU per run (profiled,
``docs/performance.md``). This sends the same request on the session's own route
(``HttpRoute``: its client's headers and auth, and the wire under it, with the SSRF pin, size
bound and watch, all apply), stamped by the session itself
(``sdk_internals.stamp``: ``_meta`` and the ``Mcp-*`` headers), and reads the answer as the
SDK's transport and session would:

- a complete result is validated as ``CallToolResult``, then against the tool's output schema
  (``validate_tool_result``, as the SDK does);
- a task (the tasks extension's ``resultType: "task"``) is resolved by ``TASKS``, as the SDK
  resolves the claim;
- the call's progress reaches ``progressed``; any other notification goes to the session
  (``sdk_internals.deliver_notification``: logging, and the cache eviction on
  ``tools/list_changed``);
- a JSON-RPC error is raised as ``MCPError``; an HTTP answer without one is mapped as the
  SDK's transport maps it.

The request carries the trace context of the current span (the tool call's) in ``_meta``, as
the SDK's does (SEP-414).

Three answers leave the call to the SDK (``call_tool`` returns None), each one the server
did not complete: ``input_required`` (the SDK answers the input requests with our callbacks
and retries; round one is sent again, which a stateless round that asked for input is built
for), ``HEADER_MISMATCH`` (refused unrun: the SDK lists the tools again and resends) and a
redirect (the SDK follows one within the origin).
"""

from __future__ import annotations

import itertools
import logging
from typing import Any

import mcp_types as types
import orjson
from mcp import Client
from mcp.client.extension import ClaimContext
from mcp.shared.dispatcher import ProgressFnT
from mcp.shared.exceptions import MCPError
from mcp_types.jsonrpc import (
    CONNECTION_CLOSED,
    HEADER_MISMATCH,
    INTERNAL_ERROR,
    INVALID_REQUEST,
    METHOD_NOT_FOUND,
)
from mcp_types.version import MODERN_PROTOCOL_VERSIONS
from opentelemetry import propagate, trace

from app.mcp.features.tasks import TASKS, CreatedTask
from app.mcp.sessions.sdk_internals import deliver_notification, stamp
from app.mcp.transport.clients import Answer, HttpRoute

logger = logging.getLogger(__name__)

_ACCEPT = {"accept": "application/json, text/event-stream", "content-type": "application/json"}
_ids = itertools.count(1)
"""Request ids: a 2026-07-28 POST stands alone, so they need only differ between calls."""


def applies(client: Client) -> bool:
    """Whether a call on this Streamable HTTP session may go directly (it speaks 2026-07-28)."""
    return client.session.protocol_version in MODERN_PROTOCOL_VERSIONS


async def call_tool(
    client: Client,
    route: HttpRoute,
    name: str,
    arguments: dict[str, Any],
    progressed: ProgressFnT,
) -> types.CallToolResult | None:
    """Call ``name``; None when the answer leaves the call to the SDK (see the module)."""
    session = client.session
    request_id = next(_ids)
    data: dict[str, Any] = {
        "method": "tools/call",
        "params": {"name": name, "arguments": arguments, "_meta": {"progressToken": request_id}},
    }
    if trace.get_current_span().get_span_context().is_valid:  # the call's span (SEP-414)
        propagate.inject(data["params"]["_meta"])
    headers = {**_ACCEPT, **stamp(session, data)}
    body = orjson.dumps({"jsonrpc": "2.0", "id": request_id, **data})
    try:
        async with route.post(body, headers) as answer:
            message = await _response(answer, session, request_id, progressed)
        if message is None:
            return None
        if (error := message.get("error")) is not None:
            raise MCPError.from_error_data(types.ErrorData.model_validate(error))
    except MCPError as refused:
        if refused.code == HEADER_MISMATCH:
            return None  # refused unrun: the SDK lists the tools again and resends
        raise
    result = message.get("result")
    if not isinstance(result, dict):
        raise MCPError(INVALID_REQUEST, "the server's answer has neither a result nor an error")
    match result.get("resultType"):
        case "input_required":
            return None
        case "task":
            context = ClaimContext(session=session, tool_name=name, read_timeout_seconds=None)
            final = await TASKS.resolve(CreatedTask.model_validate(result, by_name=False), context)
        case _:
            final = types.CallToolResult.model_validate(result, by_name=False)
    if not final.is_error:
        await session.validate_tool_result(name, final)
    return final


async def _response(
    response: Answer, session: Any, request_id: int, progressed: ProgressFnT
) -> dict[str, Any] | None:
    """The JSON-RPC response to ``request_id`` (the call's notifications handled on the way),
    or None for a redirect."""
    status = response.status
    content_type = response.header("content-type").lower()
    if 300 <= status < 400:
        return None
    if status == 202:
        raise MCPError(INVALID_REQUEST, "server answered a request with 202 Accepted")
    if status >= 400:
        raise await _http_error(response, content_type)
    if content_type.startswith("application/json"):
        answer = orjson.loads(await response.read())
        if not isinstance(answer, dict):
            raise MCPError(INVALID_REQUEST, "the server's answer is not a JSON-RPC response")
        return answer
    if content_type.startswith("text/event-stream"):
        return await _streamed(response, session, request_id, progressed)
    raise MCPError(INVALID_REQUEST, f"Unexpected content type: {content_type}")


async def _http_error(response: Answer, content_type: str) -> MCPError:
    """An HTTP error status: the JSON-RPC error in its body if there is one (it says more),
    else what the SDK's transport makes of the status."""
    if content_type.startswith("application/json"):
        try:
            message = orjson.loads(await response.read())
        except orjson.JSONDecodeError:
            message = None
        if isinstance(message, dict) and isinstance(message.get("error"), dict):
            return MCPError.from_error_data(types.ErrorData.model_validate(message["error"]))
    if response.status == 404:
        return MCPError(METHOD_NOT_FOUND, "Not Found")
    return MCPError(INTERNAL_ERROR, "Server returned an error response")


async def _streamed(
    response: Answer, session: Any, request_id: int, progressed: ProgressFnT
) -> dict[str, Any]:
    """The response at the end of an SSE answer; the call's progress and other notifications
    on the way."""
    async for event in response.events():
        message = orjson.loads(event.data) if event.data else None
        if not isinstance(message, dict):
            continue
        method = message.get("method")
        if method is None:
            if message.get("id") == request_id:
                return message
            continue
        if "id" in message:  # a server request: none go on a 2026-07-28 POST stream
            logger.warning("MCP server sent a request on a call's stream; ignored: %s", method)
            continue
        params = message.get("params") or {}
        if method == "notifications/progress" and params.get("progressToken") == request_id:
            progress = types.ProgressNotificationParams.model_validate(params)
            await progressed(progress.progress, progress.total, progress.message)
        else:
            await deliver_notification(session, method, params)
    raise MCPError(CONNECTION_CLOSED, "the server's stream ended before its answer")
