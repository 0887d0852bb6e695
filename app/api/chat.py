"""``POST /v1/chat/completions``: parse into a RunRequest, render events as OpenAI's objects."""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import AsyncIterator
from contextlib import aclosing
from dataclasses import dataclass, field
from typing import Any, assert_never

from fastapi import APIRouter, Depends, Request
from fastapi.responses import JSONResponse, Response

from app.api.deps import Services, authenticate, get_services
from app.api.disconnect import drain, unless_disconnected
from app.api.errors import ERROR_RESPONSES, error_response_body
from app.api.limits import check_request_size, effective_limits
from app.api.schemas import MODEL_PARAMS, ChatCompletionRequest, McpToolParam
from app.api.servers import resolve_servers
from app.api.sse import EventStreamResponse
from app.engine.events import (
    ApprovalRequired,
    ClientToolCallDelta,
    McpCallFinished,
    McpCallStarted,
    RunEvent,
    RunFinished,
    TextDelta,
    ToolsListed,
    TurnStarted,
    TurnUsage,
)
from app.engine.history import restore_hidden_turns
from app.engine.loop import run
from app.engine.request import RunRequest
from app.errors import InvalidRequest
from app.principal import Principal

router = APIRouter(responses=ERROR_RESPONSES)

_LIMIT_REASONS = ("max_turns", "max_tool_calls", "budget_exceeded")


async def parse_chat(
    body: ChatCompletionRequest, services: Services, principal: Principal
) -> RunRequest:
    """The internal request for a chat completion."""
    services.authorize_model(principal, body.model)
    mcp_tools: list[tuple[int, McpToolParam]] = []
    client_tools: list[dict[str, Any]] = []
    for index, tool in enumerate(body.tools or []):
        if isinstance(tool, McpToolParam):
            if tool.require_approval not in (None, "never"):
                raise InvalidRequest(
                    "Chat Completions has no approval protocol: set require_approval to "
                    "'never', or use /v1/responses for MCP approvals.",
                    param=f"tools[{index}].require_approval",
                )
            mcp_tools.append((index, tool))
        else:
            client_tools.append(tool.model_dump(exclude_none=True))
    check_request_size(
        services.settings.request_limits,
        messages=len(body.messages),
        tools=len(body.tools or []),
        mcp_servers=len(mcp_tools),
    )
    fields = body.model_dump(include=set(MODEL_PARAMS), exclude_none=True)
    messages = [m.model_dump(exclude_none=True) for m in body.messages]
    await services.check_budget(principal, body.model, messages, client_tools)
    return RunRequest(
        principal=principal,
        model=body.model,
        messages=await restore_hidden_turns(messages, services.engine.hidden, principal.key_id),
        keep_hidden_turns=True,
        servers=await resolve_servers(
            mcp_tools, services.registered_servers, principal, services.address_policy
        ),
        client_tools=client_tools,
        params=fields,
        limits=effective_limits(services.settings.limits, body.mcp_limits),
        stream_model=bool(body.stream),
    )


@dataclass
class ChatRenderer:
    """Collects a run's events into a ``chat.completion``, or renders them as chunks."""

    model: str
    include_usage: bool = False
    id: str = field(default_factory=lambda: f"chatcmpl-{uuid.uuid4().hex}")
    created: int = field(default_factory=lambda: int(time.time()))
    text: list[str] = field(default_factory=list)
    mcp_calls: list[dict[str, Any]] = field(default_factory=list)
    usage: dict[str, int] = field(
        default_factory=lambda: dict.fromkeys(("prompt", "completion", "cached", "reasoning"), 0)
    )
    finished: RunFinished | None = None
    new_turn: bool = False

    def absorb(self, event: RunEvent) -> list[dict[str, Any]]:
        """Take in an event; return the chunk deltas it makes (for streaming)."""
        match event:
            case TurnStarted():
                self.new_turn = True
            case TextDelta(text=text):
                if self.new_turn and self.text:
                    text = "\n\n" + text  # keep the texts of different turns apart
                self.new_turn = False
                self.text.append(text)
                return [{"content": text}]
            case ClientToolCallDelta():
                return [{"tool_calls": [_call_delta(event)]}]
            case TurnUsage():
                for name, value in (
                    ("prompt", event.prompt_tokens),
                    ("completion", event.completion_tokens),
                    ("cached", event.cached_tokens),
                    ("reasoning", event.reasoning_tokens),
                ):
                    self.usage[name] += value
            case McpCallFinished():
                self.mcp_calls.append(
                    {
                        "id": event.call_id,
                        "server_label": event.server_label,
                        "name": event.tool,
                        "arguments": event.arguments,
                        "output": event.output,
                        "error": event.error,
                        "duration_ms": round(event.duration_s * 1000, 1),
                        "notes": list(event.notes),
                    }
                )
            case RunFinished():
                self.finished = event
            case ToolsListed() | McpCallStarted() | ApprovalRequired():
                pass
            case _:
                assert_never(event)
        return []

    def finish_reason(self) -> str:
        assert self.finished is not None
        reason = self.finished.reason
        if reason in _LIMIT_REASONS:
            return "length"
        return "stop" if reason == "approval_required" else reason

    def extension(self) -> dict[str, Any]:
        """toolbridge's field on the response: what ran, and why a limit ended the run."""
        incomplete = None
        if self.finished is not None and self.finished.reason in _LIMIT_REASONS:
            incomplete = {"reason": self.finished.reason, "message": self.finished.detail}
        return {"mcp_calls": self.mcp_calls, "incomplete_details": incomplete}

    def usage_body(self) -> dict[str, Any]:
        prompt, completion = self.usage["prompt"], self.usage["completion"]
        sampling = self.finished.sampling if self.finished else None
        return {
            "sampling": sampling.as_usage() if sampling else None,
            "prompt_tokens": prompt,
            "completion_tokens": completion,
            "total_tokens": prompt + completion,
            "prompt_tokens_details": {"cached_tokens": self.usage["cached"]},
            "completion_tokens_details": {"reasoning_tokens": self.usage["reasoning"]},
        }

    def completion(self) -> dict[str, Any]:
        assert self.finished is not None
        message: dict[str, Any] = {
            "role": "assistant",
            "content": "".join(self.text) or None,
            "refusal": None,
        }
        if self.finished.client_tool_calls:
            message["tool_calls"] = list(self.finished.client_tool_calls)
        return {
            "id": self.id,
            "object": "chat.completion",
            "created": self.created,
            "model": self.model,
            "system_fingerprint": None,
            "choices": [
                {
                    "index": 0,
                    "message": message,
                    "logprobs": None,
                    "finish_reason": self.finish_reason(),
                }
            ],
            "usage": self.usage_body(),
            "toolbridge": self.extension(),
        }

    def chunk(
        self, delta: dict[str, Any] | None, *, finish: str | None = None, **extra: Any
    ) -> str:
        body: dict[str, Any] = {
            "id": self.id,
            "object": "chat.completion.chunk",
            "created": self.created,
            "model": self.model,
            "system_fingerprint": None,
        }
        body["choices"] = (
            []
            if delta is None
            else [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}]
        )
        if self.include_usage:
            body["usage"] = None
        body.update(extra)
        return f"data: {json.dumps(body)}\n\n"

    async def stream(self, events: AsyncIterator[RunEvent]) -> AsyncIterator[str]:
        """The run as ``chat.completion.chunk`` SSE, ending in ``data: [DONE]``."""
        started = False
        async with aclosing(events) as items:
            async for event in items:
                if not started:
                    started = True
                    yield self.chunk({"role": "assistant", "content": ""})
                for delta in self.absorb(event):
                    yield self.chunk(delta)
        yield self.chunk({}, finish=self.finish_reason(), toolbridge=self.extension())
        if self.include_usage:
            yield self.chunk(None, usage=self.usage_body())
        yield "data: [DONE]\n\n"

    @staticmethod
    def stream_error(exc: Exception) -> str:
        _, body = error_response_body(exc)
        return f"data: {json.dumps(body)}\n\ndata: [DONE]\n\n"


def _call_delta(event: ClientToolCallDelta) -> dict[str, Any]:
    if event.call_id is None:
        return {"index": event.index, "function": {"arguments": event.arguments}}
    return {
        "index": event.index,
        "id": event.call_id,
        "type": "function",
        "function": {"name": event.name, "arguments": event.arguments},
    }


@router.post("/v1/chat/completions", response_model=None)
async def chat_completions(
    http: Request,
    body: ChatCompletionRequest,
    services: Services = Depends(get_services),
    principal: Principal = Depends(authenticate),
) -> Response:
    request = await parse_chat(body, services, principal)
    include_usage = bool(body.stream_options and body.stream_options.include_usage)
    renderer = ChatRenderer(model=body.model, include_usage=include_usage)
    events = run(request, services.engine)
    if body.stream:
        return EventStreamResponse(
            renderer.stream(events),
            keepalive_s=services.settings.keepalive_s,
            stream_error=renderer.stream_error,
        )

    async def complete() -> Response:
        await drain(events, renderer.absorb)
        return JSONResponse(renderer.completion())

    return await unless_disconnected(http, complete)
