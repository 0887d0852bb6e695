"""One open MCP session of a run: the tools it offers, and calling them."""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import anyio
import httpx2
import mcp_types as types
from mcp.shared.dispatcher import ProgressFnT
from mcp.shared.exceptions import MCPError
from mcp_types import jsonrpc
from pydantic import ValidationError

from app.mcp.failures import RESULT_CHECK, describe_failure
from app.mcp.features.notes import CallUpdate, ElicitationDeclined, Note, Progress
from app.mcp.features.tasks import observing, run_legacy_task, wants_legacy_task
from app.mcp.results import bounded_blocks, result_text, truncate
from app.mcp.servers import ServerSpec
from app.mcp.sessions import direct_calls
from app.mcp.sessions.pool import Lease

logger = logging.getLogger(__name__)

Renew = Callable[[ServerSpec, "Lease"], Awaitable["Lease"]]
"""Opens a new session in place of a stale one (``RunSessions``)."""


@dataclass(frozen=True, slots=True)
class ToolExecutionError:
    """The tool ran and answered ``isError``; ``content`` is its error content."""

    content: tuple[dict[str, Any], ...]

    def wire(self) -> dict[str, Any]:
        return {"type": "mcp_tool_execution_error", "content": list(self.content)}


@dataclass(frozen=True, slots=True)
class ProtocolError:
    """A JSON-RPC error (from the server, or ours: a timeout, arguments never sent)."""

    code: int
    message: str

    def wire(self) -> dict[str, Any]:
        return {"type": "mcp_protocol_error", "code": self.code, "message": self.message}


@dataclass(frozen=True, slots=True)
class HttpError:
    """The server answered the call with an HTTP error status."""

    code: int
    message: str

    def wire(self) -> dict[str, Any]:
        return {"type": "http_error", "code": self.code, "message": self.message}


ToolError = ToolExecutionError | ProtocolError | HttpError
"""Why a call failed, as openai-python 3.x types ``mcp_call.error``."""

TIMED_OUT = -32001
"""The ``mcp`` SDK's code for a request that timed out."""
CONNECTION_CLOSED = jsonrpc.CONNECTION_CLOSED
"""The ``mcp`` SDK's code for a connection that failed or closed."""
INVALID_PARAMS = -32602
"""JSON-RPC's code for arguments a tool cannot take (and MCP's for an unknown tool)."""
INTERNAL_ERROR = -32603
"""JSON-RPC's code for a result we could not take (it broke its own output schema)."""


@dataclass(frozen=True, slots=True, kw_only=True)
class ToolOutcome:
    """What one tool call produced: what the model reads, and the error if it failed."""

    text: str
    error: ToolError | None = None
    duration_s: float
    notes: tuple[Note, ...] = ()
    """What the caller should know: the server asked for input, sampled a model, ..."""

    @property
    def is_error(self) -> bool:
        return self.error is not None


def failure_of(exc: Exception) -> ToolError:
    """A failed call's error, typed (nothing in it that the caller should not see)."""
    while isinstance(exc, ExceptionGroup) and exc.exceptions:
        exc = exc.exceptions[0]
    match exc:
        case MCPError():
            return ProtocolError(exc.code, exc.error.message)
        case httpx2.HTTPStatusError():
            status = exc.response.status_code
            return HttpError(status, f"the server answered HTTP {status}")
        case RuntimeError() if RESULT_CHECK.match(str(exc)):
            return ProtocolError(INTERNAL_ERROR, describe_failure(exc))
    return ProtocolError(CONNECTION_CLOSED, describe_failure(exc))


class ServerSession:
    """An MCP session leased to one run with one server, and the tools it offers this run."""

    def __init__(
        self,
        spec: ServerSpec,
        lease: Lease,
        tools: list[types.Tool],
        *,
        listed: bool,
        renew: Renew,
    ) -> None:
        self.spec = spec
        self.tools = tools
        self.listed = listed  # False: the tools came from the conversation, not the server
        self._lease = lease
        self._renew = renew
        self._renewing = anyio.Lock()

    @property
    def _notes(self) -> list[Note]:
        """Appended to by the session's callbacks (a renewed session keeps the same list)."""
        return self._lease.callbacks.notes

    def _failed(self, tool: str, exc: Exception) -> str:
        """The error text for a failed call; a 2025-11-25 "URL elicitation required" (-32042)
        is reported like a declined URL elicitation, since no one here can open the URL."""
        if isinstance(exc, MCPError) and exc.code == types.URL_ELICITATION_REQUIRED:
            try:
                data = types.ElicitationRequiredErrorData.model_validate(exc.error.data)
            except ValidationError:
                data = types.ElicitationRequiredErrorData(elicitations=[])
            for elicitation in data.elicitations:
                self._notes.append(
                    ElicitationDeclined(
                        mode="url", message=elicitation.message, url=elicitation.url
                    )
                )
            logger.warning(
                "MCP server needs user interaction; declined: server=%s mode=url", self.spec.label
            )
            return f"Tool call needs user interaction: {exc.error.message}"
        logger.warning(
            "MCP tool call failed: server=%s tool=%s reason=%s",
            self.spec.label,
            tool,
            describe_failure(exc),
        )
        return f"Tool call failed: {describe_failure(exc)}"

    def _text(self, result: types.CallToolResult) -> str:
        return result_text(result, prefer_structured=self.spec.prefer_structured_content)

    async def call_tool(
        self,
        name: str,
        arguments: dict[str, Any],
        *,
        timeout_s: float,
        max_chars: int,
        on_progress: Callable[[CallUpdate], None] | None = None,
    ) -> ToolOutcome:
        """Call a tool; any failure becomes an error outcome, never an exception.

        A progress token goes with every call: the server's progress reaches ``on_progress`` as
        it comes, and the latest is the call's note. Notes the server's callbacks leave while
        the call runs are the call's (with parallel calls to one server, a note goes to every
        call in flight then). A call the server runs as a task (``app/mcp/features/tasks.py``)
        reports each status the same way; its latest is a note too."""
        started, first_note = time.monotonic(), len(self._notes)
        latest: dict[type, CallUpdate] = {}

        def update(news: CallUpdate) -> None:
            latest[type(news)] = news
            if on_progress is not None:
                on_progress(news)

        async def progressed(progress: float, total: float | None, message: str | None) -> None:
            update(Progress(progress=progress, total=total, message=message))

        callbacks = self._lease.callbacks
        callbacks.begin_call()
        error: ToolError | None = None
        try:
            with anyio.fail_after(timeout_s), observing(update):
                result = await self._call(name, arguments, timeout_s, progressed)
            text = self._text(result)
            if result.is_error:
                dumped = (
                    b.model_dump(mode="json", by_alias=True, exclude_none=True)
                    for b in result.content
                )
                error = ToolExecutionError(bounded_blocks(list(dumped), max_chars))
        except TimeoutError:
            text = f"Tool call timed out after {timeout_s:g}s"
            error = ProtocolError(TIMED_OUT, text)
            self._lease.fit = False  # the call may still be running there
        except Exception as exc:  # noqa: BLE001 - boundary: one tool call against a foreign server
            # The SDK reports a body cut at our size bound as a closed connection: say which.
            exc = self._lease.watch.take_failure() or exc
            text, error = self._failed(name, exc), failure_of(exc)
            if not isinstance(error, ProtocolError) or error.code in (TIMED_OUT, CONNECTION_CLOSED):
                self._lease.fit = False  # the transport failed, not the tool: no next run here
        finally:
            callbacks.end_call()
        return ToolOutcome(
            text=truncate(text, max_chars),
            error=error,
            duration_s=time.monotonic() - started,
            notes=tuple(self._notes[first_note:]) + tuple(latest.values()),
        )

    async def _call(
        self, name: str, arguments: dict[str, Any], timeout_s: float, progressed: ProgressFnT
    ) -> types.CallToolResult:
        lease = self._lease
        try:
            return await self._call_on(lease, name, arguments, timeout_s, progressed)
        except MCPError:
            if not (lease.reused and lease.watch.session_gone):
                raise
        # The server forgot a warm session while it was idle (restarted, expired it): it answered
        # 404, so the call never ran there. A new session, as the spec asks, and the call again.
        async with self._renewing:  # parallel calls renew once
            if self._lease is lease:
                logger.info(
                    "MCP session expired on the server; reopened: server=%s", self.spec.label
                )
                self._lease = await self._renew(self.spec, lease)
        return await self._call_on(self._lease, name, arguments, timeout_s, progressed)

    async def _call_on(
        self,
        lease: Lease,
        name: str,
        arguments: dict[str, Any],
        timeout_s: float,
        progressed: ProgressFnT,
    ) -> types.CallToolResult:
        client = lease.client
        tool = next((t for t in self.tools if t.name == name), None)
        if wants_legacy_task(tool, client.server_capabilities):
            # The server keeps the task a little longer than we wait for it.
            ttl_ms = int(timeout_s * 1000) + 60_000
            return await run_legacy_task(client.session, name, arguments, ttl_ms=ttl_ms)
        if lease.route is not None and direct_calls.applies(client):
            result = await direct_calls.call_tool(client, lease.route, name, arguments, progressed)
            if result is not None:
                return result
        return await client.call_tool(name, arguments, progress_callback=progressed)
