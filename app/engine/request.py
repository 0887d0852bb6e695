"""The one internal request both endpoints parse into."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from app.config import Limits
from app.engine.events import ProgressFeed, ToolCall
from app.llm.client import Message, MessagesJson
from app.mcp.servers import ServerSpec
from app.principal import Principal


@dataclass(frozen=True, slots=True, kw_only=True)
class ApprovalDecision:
    """The caller's answer to an approval request of an earlier response."""

    call: ToolCall
    """The tool call as the model made it (model-facing name)."""
    approve: bool
    reason: str | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class RunRequest:
    """Everything a run needs, independent of the endpoint it came from."""

    principal: Principal
    model: str
    messages: list[Message]
    """The conversation so far, in Chat Completions format."""
    servers: list[ServerSpec] = field(default_factory=list)
    client_tools: list[dict[str, Any]] = field(default_factory=list)
    """The caller's function tools, passed to the model untouched."""
    params: dict[str, Any] = field(default_factory=dict)
    """Model parameters passed through (temperature, max_tokens, tool_choice, ...)."""
    limits: Limits = field(default_factory=Limits)
    stream_model: bool = False
    """Stream from the model (so text reaches a streaming caller as it arrives)."""
    progress: ProgressFeed | None = None
    """Where the servers' progress goes while the tools run (a streamed run's); None: nowhere."""
    approvals: list[ApprovalDecision] = field(default_factory=list)
    """Approved calls run, denied ones are reported to the model, before its first turn."""
    hidden_turns: bool = False
    """Chat Completions: MCP turns the response does not show are kept for the continuation,
    and restored into ``messages`` when it comes back."""
    approvals_at: int | None = None
    """Where in ``messages`` their results belong (after their assistant message); None: end."""
    text_only: bool = False
    """``messages`` are all text, with no tool call or result: no hidden turn to restore."""
    encoded: MessagesJson | None = None
    """``messages`` already encoded for the model (when it was cheap, on arrival); None: not."""

    def client_tool_names(self) -> set[str]:
        return {t["function"]["name"] for t in self.client_tools}
