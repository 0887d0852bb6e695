"""What a run reports, as facts in the order they happen. Renderers in ``app/api`` turn these
into an endpoint's wire format; events carry no wire details (no sequence numbers, no SSE)."""

from __future__ import annotations

import asyncio
from collections import deque
from dataclasses import dataclass, field
from typing import Any, Literal

import mcp_types as types

from app.mcp.features.notes import CallUpdate, Note
from app.mcp.sessions.session import ToolError


@dataclass(frozen=True, slots=True)
class ToolCall:
    """A function call the model made: an MCP tool's (ours to run) or the caller's own."""

    id: str
    name: str
    """The model-facing name."""
    arguments: str
    """JSON text, as the model wrote it."""

    def as_chat(self) -> dict[str, Any]:
        """As an entry of a Chat Completions ``tool_calls`` list."""
        return {
            "id": self.id,
            "type": "function",
            "function": {"name": self.name, "arguments": self.arguments},
        }


@dataclass(frozen=True, slots=True, kw_only=True)
class ToolsListed:
    """An MCP server was connected and its tools listed."""

    kind: Literal["tools_listed"] = "tools_listed"
    server_label: str
    tools: tuple[types.Tool, ...]
    """The tools offered to the model (after ``allowed_tools``)."""
    note: str | None = None
    """Set when the server's tools were deferred behind tool search to fit the model's limit."""


@dataclass(frozen=True, slots=True, kw_only=True)
class TurnStarted:
    """A model turn begins (text of different turns belongs to different messages)."""

    kind: Literal["turn_started"] = "turn_started"
    index: int
    """0 for the run's first model call."""


@dataclass(slots=True, kw_only=True)
class TextDelta:
    """Assistant text arrived from the model. Not frozen, though never changed: one is made
    per streamed token (as ``ModelChunk``)."""

    kind: Literal["text_delta"] = "text_delta"
    text: str


@dataclass(frozen=True, slots=True, kw_only=True)
class ClientToolCallDelta:
    """A piece of a call to one of the caller's own function tools (not ours to run)."""

    kind: Literal["client_tool_call_delta"] = "client_tool_call_delta"
    index: int
    """Position among the client tool calls of this response."""
    call_id: str | None
    """With the first piece only."""
    name: str | None
    """With the first piece only."""
    arguments: str


@dataclass(frozen=True, slots=True, kw_only=True)
class McpCallStarted:
    """An MCP tool call is about to run."""

    kind: Literal["mcp_call_started"] = "mcp_call_started"
    call_id: str
    server_label: str
    tool: str
    arguments: str
    """JSON text, as the model wrote it."""
    approved: bool = False
    """The call ran because the caller approved it."""


@dataclass(frozen=True, slots=True, kw_only=True)
class McpCallFinished:
    """An MCP tool call ended: ``output`` is what the model read; ``error`` is set if it
    failed (then the model read ``output`` as the tool's error)."""

    kind: Literal["mcp_call_finished"] = "mcp_call_finished"
    call_id: str
    server_label: str
    tool: str
    arguments: str
    output: str
    error: ToolError | None
    duration_s: float
    approved: bool = False
    notes: tuple[Note, ...] = ()
    """What the server did through us meanwhile (asked for input, sampled a model)."""


@dataclass(frozen=True, slots=True, kw_only=True)
class McpCallProgress:
    """A running MCP call's server reported progress, or its task changed status. Not a run
    event: a streamed run's writer sends these as they come (``ProgressFeed``)."""

    kind: Literal["mcp_call_progress"] = "mcp_call_progress"
    call_id: str
    update: CallUpdate


class ProgressFeed:
    """A streamed run's MCP progress (and task status), for its writer to send as it comes.

    Outside the run's events: while the tools run, the run's own task waits for them, so the
    writer's other task (the one that keeps the connection alive) sends what arrives, and the
    writer sends anything still pending before the run's next event, which keeps the order.
    (Through the run's events, every tool phase of a streamed run took a task group, a task
    and a memory stream: 4 % of a streamed chat run's CPU, measured.) Bounded: a writer that
    falls behind misses the oldest updates, never a result."""

    def __init__(self, size: int = 64) -> None:
        self._pending: deque[McpCallProgress] = deque(maxlen=size)
        self._arrived = asyncio.Event()

    def report(self, call_id: str, update: CallUpdate) -> None:
        self._pending.append(McpCallProgress(call_id=call_id, update=update))
        self._arrived.set()

    def __bool__(self) -> bool:
        """Whether anything arrived since the last take."""
        return bool(self._pending)

    def take(self) -> list[McpCallProgress]:
        """What arrived since the last take, oldest first."""
        taken = list(self._pending)
        self._pending.clear()
        self._arrived.clear()
        return taken

    async def arrived(self) -> None:
        """Return once something is pending."""
        await self._arrived.wait()


@dataclass(frozen=True, slots=True, kw_only=True)
class McpCallSkipped:
    """An MCP tool call the model asked for that did not run: the caller denied it, or a limit
    ended the run first."""

    kind: Literal["mcp_call_skipped"] = "mcp_call_skipped"
    call_id: str
    server_label: str
    tool: str
    arguments: str
    reason: str
    denied: bool = False
    """The caller denied it (an answer to an approval request)."""


@dataclass(frozen=True, slots=True)
class LoadedTool:
    """A deferred server's tool that a search loaded."""

    server_label: str
    server_description: str | None
    name: str
    """The model-facing name."""
    tool: types.Tool


@dataclass(frozen=True, slots=True, kw_only=True)
class ToolSearched:
    """The model searched the deferred servers' tools (toolbridge ran the search)."""

    kind: Literal["tool_searched"] = "tool_searched"
    call_id: str
    arguments: dict[str, Any]
    loaded: tuple[LoadedTool, ...]


@dataclass(frozen=True, slots=True, kw_only=True)
class ApprovalRequired:
    """An MCP call waits for the caller's approval; the run ends after this turn."""

    kind: Literal["approval_required"] = "approval_required"
    call_id: str
    server_label: str
    tool: str
    arguments: str


@dataclass(frozen=True, slots=True, kw_only=True)
class TurnUsage:
    """Tokens used by one model call of the run."""

    kind: Literal["turn_usage"] = "turn_usage"
    model: str
    prompt_tokens: int
    completion_tokens: int
    cached_tokens: int = 0
    reasoning_tokens: int = 0


FinishReason = Literal[
    "stop",
    "length",
    "content_filter",
    "tool_calls",
    "max_turns",
    "max_tool_calls",
    "approval_required",
    "budget_exceeded",
]


@dataclass(frozen=True, slots=True, kw_only=True)
class RunFinished:
    """The run ended. Limits end a run this way too, never with an exception."""

    kind: Literal["run_finished"] = "run_finished"
    reason: FinishReason
    """The model's own finish reason, or the limit that ended the run."""
    detail: str | None = None
    """Why, in words, when a limit ended the run."""
    client_tool_calls: tuple[ToolCall, ...] = ()
    """Complete calls to the caller's function tools."""
    usage: TokenTotals = field(default_factory=lambda: TokenTotals())
    """The run's model turns' tokens."""
    sampling: SamplingTotals | None = None
    """What MCP servers' sampling requests used during the run."""


@dataclass(frozen=True, slots=True, kw_only=True)
class TokenTotals:
    """The tokens of every model turn of the run, added up (sampling not included)."""

    prompt_tokens: int = 0
    completion_tokens: int = 0
    cached_tokens: int = 0
    reasoning_tokens: int = 0

    def plus(self, turn: TurnUsage) -> TokenTotals:
        return TokenTotals(
            prompt_tokens=self.prompt_tokens + turn.prompt_tokens,
            completion_tokens=self.completion_tokens + turn.completion_tokens,
            cached_tokens=self.cached_tokens + turn.cached_tokens,
            reasoning_tokens=self.reasoning_tokens + turn.reasoning_tokens,
        )


@dataclass(frozen=True, slots=True, kw_only=True)
class SamplingTotals:
    """The run's sampling, for the caller's usage."""

    requests: int
    prompt_tokens: int
    completion_tokens: int
    cost_usd: float

    def as_usage(self) -> dict[str, Any]:
        """toolbridge's ``usage.sampling`` extension field."""
        return {
            "requests": self.requests,
            "prompt_tokens": self.prompt_tokens,
            "completion_tokens": self.completion_tokens,
            "cost_usd": round(self.cost_usd, 10),
        }


RunEvent = (
    ToolsListed
    | TurnStarted
    | TextDelta
    | ClientToolCallDelta
    | McpCallStarted
    | McpCallFinished
    | McpCallSkipped
    | ToolSearched
    | ApprovalRequired
    | TurnUsage
    | RunFinished
)
"""Every event the loop yields: renderers match on it exhaustively (checked by mypy)."""
