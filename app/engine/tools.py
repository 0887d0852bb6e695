"""Running the model's MCP tool calls: a ``ToolCall`` in, a ``ToolOutcome`` out.

Arguments are checked before anything reaches a server; each call gets a trace span and its
metrics; several calls run concurrently and come back in the model's order.
"""

from __future__ import annotations

from collections.abc import Callable
from contextlib import nullcontext
from functools import partial

from opentelemetry import trace
from opentelemetry.trace import Span, Status, StatusCode

from app.concurrency import each_concurrently
from app.config import Limits
from app.engine.events import ToolCall
from app.mcp.features.notes import CallUpdate
from app.mcp.sessions.session import INVALID_PARAMS, ProtocolError, ToolOutcome
from app.mcp.tools import BadArguments, Toolset
from app.metrics import TOOL_CALLS, TOOL_SECONDS, series, server_label
from app.tracing import span, tracing


def describe(call: ToolCall, toolset: Toolset) -> tuple[str, str]:
    """(server label, MCP tool name) of a call; a name no one offered keeps its own."""
    bound = toolset.get(call.name)
    if bound is None:
        return "", call.name
    return bound.server_label, bound.tool.name


ProgressSink = Callable[[str, CallUpdate], None]
"""Receives (call id, progress) while calls run."""


async def _call(
    call: ToolCall, toolset: Toolset, limits: Limits, on_progress: ProgressSink | None
) -> ToolOutcome:
    bound = toolset.get(call.name)
    if bound is None:
        missing = f"There is no tool named '{call.name}'."
        return ToolOutcome(text=missing, error=ProtocolError(INVALID_PARAMS, missing), duration_s=0)
    arguments = bound.parse_arguments(call.arguments, max_bytes=limits.max_tool_argument_bytes)
    if isinstance(arguments, BadArguments):  # the model reads why; the server sees nothing
        error = ProtocolError(INVALID_PARAMS, arguments.reason)
        return ToolOutcome(text=arguments.reason, error=error, duration_s=0)
    return await bound.session.call_tool(
        bound.tool.name,
        arguments.value,
        timeout_s=limits.tool_timeout_s,
        max_chars=limits.max_tool_output_chars,
        on_progress=None if on_progress is None else partial(on_progress, call.id),
    )


async def execute(
    call: ToolCall,
    toolset: Toolset,
    limits: Limits,
    parent: Span | None = None,
    on_progress: ProgressSink | None = None,
) -> ToolOutcome:
    """Run one call (never raises for the tool's failures: they are the outcome's error)."""
    label, tool = describe(call, toolset)
    attributes = {
        "gen_ai.operation.name": "execute_tool",
        "gen_ai.tool.name": tool,
        "gen_ai.tool.call.id": call.id,
        "toolbridge.mcp.server_label": label,
    }
    with (
        span(f"execute_tool {tool}", attributes, parent=parent) as tool_span,
        # Current while the call runs (a coroutine, not a run's generator): its trace context
        # goes to the server in the request's _meta (SEP-414), and the SDK's span nests in it.
        # Not tracing, there is no context to pass.
        trace.use_span(tool_span, end_on_exit=False) if tracing() else nullcontext(),
    ):
        outcome = await _call(call, toolset, limits, on_progress)
        if outcome.is_error:
            tool_span.set_status(Status(StatusCode.ERROR, "tool error"))
    bound = toolset.get(call.name)
    server = server_label(label, registered=bound is not None and bound.session.spec.registered)
    series(TOOL_CALLS, server, "error" if outcome.is_error else "ok").inc()
    series(TOOL_SECONDS, server).observe(outcome.duration_s)
    return outcome


async def execute_all(
    calls: list[ToolCall],
    toolset: Toolset,
    limits: Limits,
    parent: Span | None = None,
    on_progress: ProgressSink | None = None,
) -> list[ToolOutcome]:
    """Run calls concurrently; outcomes in the calls' order."""
    outcomes: list[ToolOutcome | None] = [None] * len(calls)

    async def run_one(index: int, call: ToolCall) -> None:
        outcomes[index] = await execute(call, toolset, limits, parent, on_progress)

    await each_concurrently(calls, run_one)
    return [outcome for outcome in outcomes if outcome is not None]
