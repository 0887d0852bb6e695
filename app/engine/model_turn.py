"""One model call of a run: budgeted, traced, assembled into a turn."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

from opentelemetry.trace import Span

from app.budget.ledger import UNLIMITED, Hold, Scope
from app.budget.scopes import estimate
from app.budget.tokens import input_tokens
from app.engine.deps import EngineDeps
from app.engine.events import RunEvent, TurnUsage
from app.engine.request import RunRequest
from app.engine.turn import TurnAssembler
from app.llm.client import Message, MessagesJson, ModelCall
from app.tracing import span


async def model_turn(
    request: RunRequest,
    deps: EngineDeps,
    messages: list[Message],
    encoded: MessagesJson,
    scopes: list[Scope],
    parent: Span | None,
    tools: list[dict[str, Any]],
    turn: TurnAssembler,
    unsettled: list[Hold],
) -> AsyncIterator[RunEvent]:
    """One model call under a budget hold: the call may produce no more output than the hold
    pays for (``max_tokens`` is set to it). A call that went well leaves its hold, with its
    real cost, in ``unsettled`` (the loop settles it while the tools run, and always before
    the run ends); a failed one is settled or released at once."""
    limit_key = "max_tokens"
    if "max_completion_tokens" in request.params:
        limit_key = "max_completion_tokens"
    asked = request.params.get(limit_key)
    prices = deps.models.prices(request.model)
    counted = 0  # no limit: the hold protects nothing, so the input is not counted (CPU)
    if prices is not None and any(scope.limit_usd != UNLIMITED for scope in scopes):
        # A limit applies: hold the input near its bill (the byte bound is ~4x), so the key's
        # other calls keep what the budget really has.
        counted = await input_tokens(request.model, messages, tools)
    cost = estimate(
        prices,
        messages,
        tools,
        max_tokens=asked or deps.budget.default_max_tokens,
        need_tokens=asked or deps.budget.typical_output_tokens,
        min_tokens=deps.budget.min_output_tokens,
        plenty=deps.budget.plentiful_calls,
        input_tokens=counted,
    )
    attributes = {"gen_ai.operation.name": "chat", "gen_ai.request.model": request.model}
    with span(f"chat {request.model}", attributes, parent=parent) as turn_span:
        async with deps.ledger.hold(scopes, cost, settle_later=unsettled) as hold:
            params = request.params
            if hold.capped:  # the call may produce no more than its hold pays for
                params = {**params, limit_key: hold.max_tokens}
                turn.cut_by_budget = hold.max_tokens < cost.max_tokens
            call = ModelCall(request.model, messages, tools, params, encoded)
            # The chunks are read here, not through a generator of their own: a layer fewer
            # for each streamed token to pass.
            async for chunk in deps.models.complete(call, stream=request.stream_model):
                for event in turn.add(chunk):
                    yield event
                if chunk.usage is not None:
                    usage = chunk.usage
                    hold.cost_usd = deps.models.cost_usd(request.model, usage)
                    hold.check_output(request.model, usage.completion_tokens)
                    turn_span.set_attribute("gen_ai.usage.input_tokens", usage.prompt_tokens)
                    turn_span.set_attribute("gen_ai.usage.output_tokens", usage.completion_tokens)
                    yield TurnUsage(
                        model=request.model,
                        prompt_tokens=usage.prompt_tokens,
                        completion_tokens=usage.completion_tokens,
                        cached_tokens=usage.cached_tokens,
                        reasoning_tokens=usage.reasoning_tokens,
                    )
        turn_span.set_attribute("gen_ai.response.finish_reasons", [turn.finish_reason or ""])
