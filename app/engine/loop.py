"""The tool loop, shared by every endpoint, streamed or not.

``run`` connects to the run's MCP servers, then alternates model turns and MCP tool calls until
the model answers, asks for the caller's own tools, or a limit is hit. Each turn ends in a typed
decision; the run ends with exactly one ``RunFinished``.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import AsyncGenerator, AsyncIterator
from dataclasses import dataclass
from typing import Any

import anyio
from opentelemetry.trace import Span

from app.budget.ledger import Hold, Ledger, Scope
from app.budget.scopes import key_scopes, run_scope
from app.budget.tokens import counted_tokens
from app.engine.deps import EngineDeps
from app.engine.events import (
    ApprovalRequired,
    FinishReason,
    LoadedTool,
    McpCallFinished,
    McpCallSkipped,
    McpCallStarted,
    RunEvent,
    RunFinished,
    SamplingTotals,
    TokenTotals,
    ToolCall,
    ToolSearched,
    ToolsListed,
    TurnStarted,
    TurnUsage,
)
from app.engine.history import restore_hidden_turns
from app.engine.model_turn import model_turn
from app.engine.request import RunRequest
from app.engine.search import FUNCTION_NAME, ToolSearch
from app.engine.search import MAX_PER_MESSAGE as MAX_SEARCHES_PER_MESSAGE
from app.engine.tools import describe, execute_all
from app.engine.turn import TurnAssembler
from app.errors import BudgetExceeded
from app.ids import run_scoped_id
from app.llm.client import DEFAULT_MAX_TOOLS, Message, MessagesJson
from app.mcp.sessions.run_sessions import RunSessions
from app.mcp.sessions.session import ServerSession, ToolOutcome
from app.mcp.tools import Toolset
from app.metrics import RUN_SECONDS, RUN_TURNS, RUNS, series
from app.sampling.handler import RunSampling
from app.tracing import span

LOADED_ROOM = 16
"""When servers are deferred to fit the model's tool limit, room kept for tools searches load."""
TOOL_ERROR_PREFIX = "[tool error] "
"""Chat tool messages have no error flag; the model reads failures behind this prefix."""


def denied_result(reason: str | None) -> str:
    """What the model reads for a call the caller did not approve."""
    why = f" Reason: {reason}" if reason else ""
    return f"The user did not approve this tool call, so it was not run.{why}"


@dataclass(frozen=True, slots=True)
class Answered:
    """The model answered without calling a tool."""

    reason: str


@dataclass(frozen=True, slots=True)
class ToolCallsRequested:
    """The model called tools: ours run now; the caller's end the run."""

    server_calls: list[ToolCall]
    client_calls: list[ToolCall]


@dataclass(frozen=True, slots=True)
class LimitReached:
    """A limit ends the run."""

    reason: FinishReason
    detail: str


Decision = Answered | ToolCallsRequested | LimitReached


@dataclass(slots=True)
class _RunState:
    messages: list[Message]
    """The conversation as the model sees it, growing as the run goes."""
    first_new: int
    """Index of the first message this run produced."""
    ledger: Ledger
    encoded: MessagesJson = dataclasses.field(default_factory=MessagesJson)
    """``messages`` as JSON so far, for the next model call."""
    scopes: list[Scope] = dataclasses.field(default_factory=list)
    """The budgets every model call of this run is charged to."""
    span: Span | None = None
    """The run's trace span, parent of its model, tool and sampling spans."""
    tool_calls_made: int = 0
    search: ToolSearch | None = None
    """Tool search over deferred servers (set once the servers are listed)."""
    max_tools: int = DEFAULT_MAX_TOOLS
    """Tools one call to the run's model may offer."""
    unsettled: list[Hold] = dataclasses.field(default_factory=list)
    """Model calls that went well, not settled yet: settled while the tools they asked for
    run (off the critical path) or, without a limit, all in one step when the run ends (the
    later calls ride on the first one's hold); always before ``RunFinished``."""

    async def settle(self, *, keep_unlimited: bool = False) -> None:
        await self.ledger.finish_all(self.unsettled, keep_unlimited=keep_unlimited)


def decide(
    turn: TurnAssembler, state: _RunState, request: RunRequest, *, turns_left: int
) -> Decision:
    """What follows a model turn."""
    if turn.cut_by_budget and turn.finish_reason == "length":
        return LimitReached(
            "budget_exceeded",
            "The model's answer was cut short: the budget left paid for only part of it.",
        )
    server_calls = turn.server_calls()
    client_calls = turn.client_calls()
    if not server_calls and not client_calls:
        return Answered(turn.finish_reason or "stop")
    if server_calls and not turns_left:
        # No turn would be left to read the results: running the calls would be wasted work.
        return LimitReached(
            "max_turns",
            f"The run reached its limit of "
            f"{request.limits.max_turns} model turns before the model answered.",
        )
    limit = request.limits.max_tool_calls
    asked = len([c for c in server_calls if c.name != FUNCTION_NAME])  # searches are not MCP calls
    if state.tool_calls_made + asked > limit:
        return LimitReached(
            "max_tool_calls",
            f"The run reached its limit of {limit} MCP tool "
            f"calls; the model asked for {asked} more.",
        )
    return ToolCallsRequested(server_calls, client_calls)


async def run(request: RunRequest, deps: EngineDeps) -> AsyncGenerator[RunEvent, None]:
    """Run the tool loop for ``request``, yielding what happens."""
    deps.models.check(request.model)
    run_id, started, turns = run_scoped_id(), time.monotonic(), 0
    scopes = key_scopes(request.principal) + run_scope(request.principal, run_id)
    attributes = {
        "gen_ai.operation.name": "invoke_agent",
        "gen_ai.agent.name": "toolbridge",
        "gen_ai.request.model": request.model,
    }
    messages = list(request.messages)
    if request.hidden_turns and not request.text_only:
        messages = await restore_hidden_turns(messages, deps.hidden, request.principal.key_id)
    with (
        deps.key_limits.run(request.principal.key_id),
        span("invoke_agent toolbridge", attributes) as run_span,
    ):
        state = _RunState(
            messages=messages,
            first_new=len(messages),
            encoded=request.encoded or MessagesJson(),
            scopes=scopes,
            span=run_span,
            ledger=deps.ledger,
        )
        sampling = RunSampling(
            principal=request.principal,
            models=deps.models,
            settings=deps.sampling,
            rates=deps.rates,
            ledger=deps.ledger,
            scopes=scopes,
            min_output_tokens=deps.budget.min_output_tokens,
            parent_span=run_span,
        )
        async with RunSessions(
            deps.mcp,
            deps.sessions,
            owner=request.principal.key_id,
            list_timeout_s=request.limits.list_timeout_s,
            sampler_for=sampling.sampler_for,
        ) as run_sessions:
            sessions = await run_sessions.open_all(request.servers)
            max_tools = deps.models.max_tools(request.model)
            toolset, state.search, capped = _toolset(request, sessions, max_tools)
            state.max_tools = max_tools
            for session in sessions:
                if session.listed:
                    label = session.spec.label
                    note = _deferred_note(capped.get(label), max_tools)
                    yield ToolsListed(server_label=label, tools=tuple(session.tools), note=note)
            await state.search.replay(state.messages)
            async for event in _answer_approvals(request, toolset, state):
                yield event
            tokens = TokenTotals()
            try:
                async for event in _turns(request, deps, toolset, state):
                    if isinstance(event, TurnStarted):
                        turns = event.index + 1
                    if isinstance(event, TurnUsage):
                        tokens = tokens.plus(event)
                    if isinstance(event, RunFinished):
                        await state.settle()  # a caller that reads its budget next sees it
                        event = dataclasses.replace(event, usage=tokens)
                        event = _finished(event, sampling, time.monotonic() - started, turns)
                        run_span.set_attribute("toolbridge.finish_reason", event.reason)
                    yield event
            finally:
                await state.settle()  # a run cut short: still charged (``finish`` is shielded)


def _toolset(
    request: RunRequest, sessions: list[ServerSession], max_tools: int
) -> tuple[Toolset, ToolSearch, dict[str, int]]:
    """The run's tools and its tool search. When the servers' tools would not fit in what the
    model accepts (``max_tools``, with the caller's own tools), the servers with the most tools
    are deferred behind tool search too (returned, with their tool counts), instead of a
    request the provider would refuse."""
    toolset = Toolset(sessions, reserved=request.client_tool_names() | {FUNCTION_NAME})
    searched = any(s.spec.deferred for s in sessions)
    offered = toolset.eager_count() + len(request.client_tools) + searched
    capped: dict[str, int] = {}
    if offered > max_tools:
        room = max_tools - len(request.client_tools) - 1 - LOADED_ROOM
        capped = toolset.fit(max(room, 0))
    deferred = {
        s.spec.label: s.spec.description
        for s in sessions
        if s.spec.deferred or s.spec.label in capped
    }
    return toolset, ToolSearch(toolset, deferred), capped


def _deferred_note(count: int | None, max_tools: int) -> str | None:
    if count is None:
        return None
    return (
        f"This server's {count} tools are offered through tool search: the model accepts at "
        f"most {max_tools} tools, and this run's servers have more."
    )


async def first_call_input_tokens(request: RunRequest, deps: EngineDeps) -> int:
    """The input tokens of the run's first model call: its messages and the tools it would
    offer (the MCP servers' tools listed, from the cache or the servers, as a run does)."""
    deps.models.check(request.model)
    messages = list(request.messages)
    if request.hidden_turns and not request.text_only:
        messages = await restore_hidden_turns(messages, deps.hidden, request.principal.key_id)
    async with RunSessions(
        deps.mcp,
        deps.sessions,
        owner=request.principal.key_id,
        list_timeout_s=request.limits.list_timeout_s,
    ) as run_sessions:
        max_tools = deps.models.max_tools(request.model)
        sessions = await run_sessions.open_all(request.servers)
        toolset, search, _ = _toolset(request, sessions, max_tools)
        await search.replay(messages)
        tools = _offered(request, toolset, search, max_tools)
    return await counted_tokens(request.model, messages, tools)


def _finished(
    event: RunFinished, sampling: RunSampling, duration_s: float, turns: int
) -> RunFinished:
    """The run's last event, with its sampling totals; the run's metrics are recorded."""
    series(RUNS, event.reason).inc()
    RUN_TURNS.observe(turns)
    RUN_SECONDS.observe(duration_s)
    usage = sampling.usage
    return dataclasses.replace(
        event,
        sampling=SamplingTotals(
            requests=usage.requests,
            prompt_tokens=usage.prompt_tokens,
            completion_tokens=usage.completion_tokens,
            cost_usd=usage.cost_usd,
        ),
    )


async def _turns(
    request: RunRequest, deps: EngineDeps, toolset: Toolset, state: _RunState
) -> AsyncIterator[RunEvent]:
    """Model turns and MCP calls until the run ends; the last event is ``RunFinished``."""
    for index, turns_left in enumerate(reversed(range(request.limits.max_turns))):
        yield TurnStarted(index=index)
        turn = TurnAssembler(request.client_tool_names())
        tools = _offered(request, toolset, state.search, state.max_tools)
        # The previous turn is settled (usually while its tools ran) before this one reserves:
        # its hold must not count in full against this turn's grant. Without a limit, nothing
        # is granted against it: this turn's reservation settles it, in the same script.
        await state.settle(keep_unlimited=True)
        try:
            async for event in model_turn(
                request,
                deps,
                state.messages,
                state.encoded,
                state.scopes,
                state.span,
                tools,
                turn,
                state.unsettled,
            ):
                yield event
        except BudgetExceeded as exc:
            if index == 0 and not state.tool_calls_made:
                raise  # nothing done yet: the caller hears 429 insufficient_quota, not silence
            yield RunFinished(reason="budget_exceeded", detail=exc.message)
            return
        match decide(turn, state, request, turns_left=turns_left):
            case Answered(reason=reason):
                yield RunFinished(reason=_model_reason(reason))
                return
            case LimitReached(reason=limit, detail=detail):
                for call in turn.server_calls():
                    if call.name != FUNCTION_NAME:
                        yield _skipped(call, toolset, detail)
                yield RunFinished(reason=limit, detail=detail)
                return
            case ToolCallsRequested(server_calls=server_calls, client_calls=client_calls):
                state.messages.append(turn.assistant_message())
                finished = False
                async for event in _calls(
                    server_calls, client_calls, request, deps, toolset, state
                ):
                    finished = isinstance(event, RunFinished)
                    yield event
                if finished:
                    return


def _offered(
    request: RunRequest, toolset: Toolset, search: ToolSearch | None, max_tools: int
) -> list[dict[str, Any]]:
    """The tools of this turn. Loaded tools come last, so the start of the prompt stays the
    same turn after turn (and cacheable); past ``max_tools``, only the latest loaded fit."""
    searching = [search.function()] if search is not None and search.enabled else []
    first = toolset.eager_tools() + request.client_tools + searching
    return first + toolset.loaded_tools(room=max(max_tools - len(first), 0))


async def _calls(
    server_calls: list[ToolCall],
    client_calls: list[ToolCall],
    request: RunRequest,
    deps: EngineDeps,
    toolset: Toolset,
    state: _RunState,
) -> AsyncIterator[RunEvent]:
    """Searches and MCP calls of one turn; ``RunFinished`` when the run stops here (calls that
    wait for approval, or the caller's own tools)."""
    search = state.search
    results: list[Message] = []
    searches = [c for c in server_calls if c.name == FUNCTION_NAME and search and search.enabled]
    for number, call in enumerate(searches):
        if number < MAX_SEARCHES_PER_MESSAGE:
            yield await _searched(call, search, results)
        else:  # answered, so the conversation stays valid, but not run
            text = f"At most {MAX_SEARCHES_PER_MESSAGE} searches a step; this one was not run."
            results.append(_tool_message(call.id, text))
            yield ToolSearched(call_id=call.id, arguments={}, loaded=())
    mcp_calls = [c for c in server_calls if c not in searches]
    waiting = [c for c in mcp_calls if _requires_approval(c, toolset)]
    runnable = [c for c in mcp_calls if c not in waiting]
    async for event in _run_server_calls(runnable, toolset, request, state, results):
        yield event
    state.messages.extend(results)
    for call in waiting:
        yield _approval_request(call, toolset)
    if waiting or client_calls:
        if client_calls and state.tool_calls_made and request.hidden_turns:
            await _keep_hidden_turns(deps, request, state, client_calls)
        why: FinishReason = "approval_required" if waiting else "tool_calls"
        yield RunFinished(reason=why, client_tool_calls=tuple(client_calls))


async def _answer_approvals(
    request: RunRequest, toolset: Toolset, state: _RunState
) -> AsyncIterator[RunEvent]:
    """Run the calls the caller approved; tell the model about the ones it denied."""
    if not request.approvals:
        return
    approved = [d for d in request.approvals if d.approve]
    results: list[Message] = []
    async for event in _run_server_calls(
        [d.call for d in approved],
        toolset,
        request,
        state,
        results,
        approved=True,
    ):
        yield event
    for decision in request.approvals:
        if not decision.approve:
            denial = denied_result(decision.reason)
            results.append(_tool_message(decision.call.id, denial))
            yield _skipped(decision.call, toolset, denial, denied=True)
    at = len(state.messages) if request.approvals_at is None else request.approvals_at
    state.messages[at:at] = results


def _requires_approval(call: ToolCall, toolset: Toolset) -> bool:
    bound = toolset.get(call.name)
    return bound is not None and bound.requires_approval


def _approval_request(call: ToolCall, toolset: Toolset) -> ApprovalRequired:
    label, tool = describe(call, toolset)
    return ApprovalRequired(
        call_id=call.id, server_label=label, tool=tool, arguments=call.arguments
    )


async def _searched(
    call: ToolCall, search: ToolSearch | None, results: list[Message]
) -> ToolSearched:
    """Run one tool search; the model reads what it loaded."""
    assert search is not None
    found = await search.run(call)
    results.append(_tool_message(call.id, found.text))
    loaded = tuple(
        LoadedTool(t.server_label, t.session.spec.description, t.name, t.tool) for t in found.loaded
    )
    return ToolSearched(call_id=call.id, arguments=found.arguments, loaded=loaded)


async def _execute(
    calls: list[ToolCall], toolset: Toolset, request: RunRequest, state: _RunState
) -> list[ToolOutcome]:
    """Run the calls (their servers' progress goes to ``request.progress``); meanwhile settle
    the model call that asked for them when a hold of it is limited (else it is settled with
    the run's other calls when the run ends, one round trip for all)."""
    report = request.progress.report if request.progress is not None else None
    if not any(hold.limited for hold in state.unsettled):
        return await execute_all(calls, toolset, request.limits, state.span, report)
    failed: list[Exception] = []

    async def settle(scope: anyio.CancelScope) -> None:
        """If settling fails (Redis down), the calls stop and the run fails with it, as it
        would have before the calls."""
        try:
            await state.settle(keep_unlimited=True)
        except Exception as exc:  # noqa: BLE001 - raised below as itself, not in a group
            failed.append(exc)
            scope.cancel()

    outcomes: list[ToolOutcome] = []

    async def work() -> None:
        outcomes.extend(await execute_all(calls, toolset, request.limits, state.span, report))

    async with anyio.create_task_group() as tg:
        tg.start_soon(settle, tg.cancel_scope)
        tg.start_soon(work)
    if failed:
        raise failed[0]
    return outcomes


def _skipped(
    call: ToolCall, toolset: Toolset, reason: str, *, denied: bool = False
) -> McpCallSkipped:
    label, tool = describe(call, toolset)
    return McpCallSkipped(
        call_id=call.id,
        server_label=label,
        tool=tool,
        arguments=call.arguments,
        reason=reason,
        denied=denied,
    )


def _tool_message(call_id: str, content: str) -> Message:
    return {"role": "tool", "tool_call_id": call_id, "content": content}


async def _run_server_calls(
    calls: list[ToolCall],
    toolset: Toolset,
    request: RunRequest,
    state: _RunState,
    results: list[Message],
    *,
    approved: bool = False,
) -> AsyncIterator[RunEvent]:
    """Run MCP calls concurrently, announcing each; their results are appended to ``results``
    as tool messages in the model's order. ``approved``: they run on the caller's approval."""
    described = [(call, *describe(call, toolset)) for call in calls]
    for call, label, tool in described:
        yield McpCallStarted(
            call_id=call.id,
            server_label=label,
            tool=tool,
            arguments=call.arguments,
            approved=approved,
        )
    outcomes = await _execute(calls, toolset, request, state)
    state.tool_calls_made += len(calls)
    for (call, label, tool), outcome in zip(described, outcomes, strict=True):
        prefix = TOOL_ERROR_PREFIX if outcome.is_error else ""
        results.append(_tool_message(call.id, prefix + outcome.text))
        yield McpCallFinished(
            call_id=call.id,
            server_label=label,
            tool=tool,
            arguments=call.arguments,
            output=outcome.text,
            error=outcome.error,
            duration_s=outcome.duration_s,
            approved=approved,
            notes=outcome.notes,
        )


async def _keep_hidden_turns(
    deps: EngineDeps, request: RunRequest, state: _RunState, client_calls: list[ToolCall]
) -> None:
    """Store this run's turns under the client-visible call ids, for the continuation."""
    produced = state.messages[state.first_new :]
    await deps.hidden.save(request.principal.key_id, [c.id for c in client_calls], produced)


def _model_reason(reason: str) -> FinishReason:
    """The model's own finish reason, as Chat Completions knows them."""
    match reason:
        case "length" | "content_filter":
            return reason
    return "stop"
