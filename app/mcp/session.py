"""One open MCP session of a run: the tools it offers, and calling them."""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from typing import Any

import anyio
import httpx2
import mcp_types as types
from mcp import Client
from mcp.shared.exceptions import MCPError
from pydantic import ValidationError

from app.mcp.callbacks import ServerCallbacks
from app.mcp.notes import ElicitationDeclined, Note
from app.mcp.results import result_text, truncate
from app.mcp.servers import ServerSpec

logger = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True, kw_only=True)
class ToolOutcome:
    """What one tool call produced, as the model will read it."""

    text: str
    is_error: bool
    duration_s: float
    notes: tuple[Note, ...] = ()
    """What the caller should know: the server asked for input, sampled a model, ..."""


def describe_failure(exc: BaseException) -> str:
    """A reason safe to show the caller: no URLs with credentials, no headers."""
    while isinstance(exc, BaseExceptionGroup) and exc.exceptions:
        exc = exc.exceptions[0]
    match exc:
        case MCPError():
            return f"MCP error {exc.code}: {exc.error.message}"
        case httpx2.HTTPStatusError():
            return f"the server answered HTTP {exc.response.status_code}"
        case TimeoutError():
            return "timed out"
        case httpx2.TimeoutException():
            return "timed out"
        case httpx2.HTTPError() | OSError():
            return f"could not connect ({type(exc).__name__})"
    return f"{type(exc).__name__}"


class ServerSession:
    """An open MCP session with one server, and the tools it offers this run."""

    def __init__(
        self,
        spec: ServerSpec,
        client: Client,
        tools: list[types.Tool],
        *,
        listed: bool,
        callbacks: ServerCallbacks,
    ) -> None:
        self.spec = spec
        self.tools = tools
        self.listed = listed  # False: the tools came from the conversation, not the server
        self._client = client
        self._callbacks = callbacks
        self._notes = callbacks.notes  # appended to by this session's callbacks

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

    async def call_tool(
        self, name: str, arguments: dict[str, Any], *, timeout_s: float, max_chars: int
    ) -> ToolOutcome:
        """Call a tool; any failure becomes an error outcome, never an exception.

        Notes the server's callbacks leave while the call runs are the call's (with parallel
        calls to one server, a note goes to every call in flight then)."""
        started, first_note = time.monotonic(), len(self._notes)
        self._callbacks.begin_call()
        try:
            with anyio.fail_after(timeout_s):
                result = await self._client.call_tool(name, arguments)
            text, is_error = result_text(result), result.is_error
        except TimeoutError:
            text, is_error = f"Tool call timed out after {timeout_s:g}s", True
        except Exception as exc:  # noqa: BLE001 - boundary: one tool call against a foreign server
            text, is_error = self._failed(name, exc), True
        finally:
            self._callbacks.end_call()
        return ToolOutcome(
            text=truncate(text, max_chars),
            is_error=is_error,
            duration_s=time.monotonic() - started,
            notes=tuple(self._notes[first_note:]),
        )
