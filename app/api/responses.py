"""``/v1/responses``: OpenAI's Responses API over the same engine as Chat Completions.

This module parses the request into a ``RunRequest`` (the conversation folded from items, see
``responses_items``), renders the run with ``ResponseRenderer``, and stores the result when
``store`` is true. It holds no loop logic.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from contextlib import aclosing
from dataclasses import dataclass
from typing import Any

import anyio
from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import JSONResponse, Response

from app.api.deps import Services, authenticate, get_services
from app.api.disconnect import drain, unless_disconnected
from app.api.errors import ERROR_RESPONSES, error_response_body
from app.api.limits import check_request_size, effective_limits
from app.api.responses_items import fold
from app.api.responses_render import ResponseRenderer, list_tools_item, new_id
from app.api.responses_schema import ResponsesRequest
from app.api.schemas import McpLimits, McpToolParam
from app.api.servers import resolve_servers
from app.api.sse import EventStreamResponse
from app.engine.events import RunEvent
from app.engine.loop import run
from app.engine.request import RunRequest
from app.errors import InvalidRequest, ServerUnreachable, ToolbridgeError
from app.mcp.naming import exposed_name
from app.mcp.servers import ApprovalPolicy
from app.principal import Principal
from app.redact import redact_url
from app.store.responses import StoredResponse

router = APIRouter(responses=ERROR_RESPONSES)

ALWAYS = ApprovalPolicy(default=True)
"""OpenAI's default for an omitted ``require_approval``."""
_REFUSED_FIELDS = {
    "background": "background mode",
    "conversation": "conversations",
    "prompt": "prompt templates",
}


@dataclass(frozen=True, slots=True)
class ParsedResponses:
    run: RunRequest
    input_items: list[dict[str, Any]]
    history: list[dict[str, Any]]


def _input_items(value: str | list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The input as items in OpenAI's stored form: each with an id, text as content parts."""
    raw = [{"role": "user", "content": value}] if isinstance(value, str) else value
    items = []
    for original in raw:
        item = dict(original) if isinstance(original, dict) else original
        if isinstance(item, dict):
            kind = item.setdefault("type", "message")
            item.setdefault("id", new_id("msg" if kind == "message" else "item"))
            if kind == "message" and isinstance(item.get("content"), str):
                part = "output_text" if item.get("role") == "assistant" else "input_text"
                item["content"] = [{"type": part, "text": item["content"]}]
                item.setdefault("status", "completed")
        items.append(item)
    return items


def _tool_choice(value: str | dict[str, Any] | None) -> str | dict[str, Any] | None:
    if value is None or isinstance(value, str):
        return value
    match value.get("type"):
        case "function" if isinstance(value.get("name"), str):
            return {"type": "function", "function": {"name": value["name"]}}
        case "mcp" if isinstance(value.get("server_label"), str):
            if isinstance(value.get("name"), str):
                name = exposed_name(value["server_label"], value["name"], set())
                return {"type": "function", "function": {"name": name}}
            return "required"
    raise InvalidRequest("Unsupported tool_choice.", param="tool_choice")


def _model_params(body: ResponsesRequest) -> dict[str, Any]:
    params: dict[str, Any] = body.model_dump(
        include={"temperature", "top_p", "parallel_tool_calls", "user"}, exclude_none=True
    )
    if body.max_output_tokens is not None:
        params["max_tokens"] = body.max_output_tokens
    if (choice := _tool_choice(body.tool_choice)) is not None:
        params["tool_choice"] = choice
    text_format = (body.text or {}).get("format") or {}
    if text_format.get("type") == "json_schema":
        schema = {k: v for k, v in text_format.items() if k != "type"}
        params["response_format"] = {"type": "json_schema", "json_schema": schema}
    elif text_format.get("type") == "json_object":
        params["response_format"] = {"type": "json_object"}
    if effort := (body.reasoning or {}).get("effort"):
        params["reasoning_effort"] = effort
    return params


async def parse_responses(
    body: ResponsesRequest, services: Services, principal: Principal
) -> ParsedResponses:
    for name, what in _REFUSED_FIELDS.items():
        if (body.model_extra or {}).get(name):
            raise InvalidRequest(
                f"{what.capitalize()} are not supported by this server.", param=name
            )
    services.authorize_model(principal, body.model)
    history: list[dict[str, Any]] = []
    if body.previous_response_id:
        stored = await services.responses.load(body.previous_response_id, principal.key_id)
        history = stored.conversation
    input_items = _input_items(body.input)
    conversation = fold(history, input_items, instructions=body.instructions)
    if not conversation.messages:
        raise InvalidRequest("input is empty: give a message, or instructions.", param="input")
    mcp_tools: list[tuple[int, McpToolParam]] = []
    client_tools = []
    for index, tool in enumerate(body.tools or []):
        if isinstance(tool, McpToolParam):
            mcp_tools.append((index, tool))
        else:
            client_tools.append(tool.as_chat_tool())
    check_request_size(
        services.settings.request_limits,
        messages=len(history) + len(input_items),
        tools=len(body.tools or []),
        mcp_servers=len(mcp_tools),
    )
    await services.check_budget(principal, body.model, conversation.messages, client_tools)
    servers = await resolve_servers(
        mcp_tools,
        services.registered_servers,
        principal,
        services.address_policy,
        default_approval=ALWAYS,
        known_tools=conversation.known_tools,
    )
    limits = effective_limits(
        services.settings.limits, McpLimits(max_tool_calls=body.max_tool_calls)
    )
    request = RunRequest(
        principal=principal,
        model=body.model,
        messages=conversation.messages,
        servers=servers,
        client_tools=client_tools,
        params=_model_params(body),
        limits=limits,
        stream_model=bool(body.stream),
        approvals=conversation.approvals,
        approvals_at=conversation.approvals_at,
    )
    return ParsedResponses(request, input_items, history)


def _echoed_fields(body: ResponsesRequest) -> dict[str, Any]:
    """Request fields the Response repeats; credentials are never echoed."""
    tools = []
    for tool in body.tools or []:
        echoed = tool.model_dump(exclude_none=True)
        if isinstance(tool, McpToolParam):
            echoed.update(headers=None, authorization=None)
            if tool.server_url is not None:
                echoed["server_url"] = redact_url(tool.server_url)
            echoed.setdefault("require_approval", "always")
        tools.append(echoed)
    return {
        "model": body.model,
        "instructions": body.instructions,
        "tools": tools,
        "tool_choice": body.tool_choice or "auto",
        "parallel_tool_calls": True
        if body.parallel_tool_calls is None
        else body.parallel_tool_calls,
        "max_output_tokens": body.max_output_tokens,
        "max_tool_calls": body.max_tool_calls,
        "temperature": body.temperature,
        "top_p": body.top_p,
        "metadata": body.metadata or {},
        "previous_response_id": body.previous_response_id,
        "store": body.store is not False,
        "user": body.user,
        "text": body.text or {"format": {"type": "text"}},
        "truncation": "disabled",
        "background": False,
    }


async def _store(
    services: Services, parsed: ParsedResponses, renderer: ResponseRenderer, enabled: bool
) -> None:
    """Keep the response (before the caller hears of it), unless ``store`` is false."""
    if not enabled:
        return
    conversation = [*parsed.history, *parsed.input_items, *renderer.output]
    await services.responses.save(
        StoredResponse(
            owner=parsed.run.principal.key_id,
            response=renderer.response(),
            input_items=parsed.input_items,
            conversation=conversation,
        )
    )


def _sse(event: dict[str, Any]) -> str:
    return f"event: {event['type']}\ndata: {json.dumps(event)}\n\n"


async def _stream(
    events: AsyncIterator[RunEvent], renderer: ResponseRenderer, store: Any
) -> AsyncIterator[str]:
    for event in renderer.start():
        yield _sse(event)
    try:
        async with aclosing(events) as items:
            async for run_event in items:
                for event in renderer.absorb(run_event):
                    yield _sse(event)
        await store()
        closing = renderer.final_events()
    except ServerUnreachable as exc:
        listed = list_tools_item(exc.server_label, [], error=exc.reason)
        closing = renderer.list_tools(listed) + renderer.fail(exc.message)
    except ToolbridgeError as exc:
        closing = renderer.fail(exc.message)
    for event in closing:
        yield _sse(event)


@router.post("/v1/responses", response_model=None)
async def create_response(
    http: Request,
    body: ResponsesRequest,
    services: Services = Depends(get_services),
    principal: Principal = Depends(authenticate),
) -> Response:
    parsed = await parse_responses(body, services, principal)
    renderer = ResponseRenderer(fields=_echoed_fields(body))
    events = run(parsed.run, services.engine)
    store_enabled = body.store is not False

    async def store() -> None:
        with anyio.CancelScope(shield=True):  # written before acknowledged, even if cancelled
            await _store(services, parsed, renderer, store_enabled)

    if body.stream:

        def stream_error(exc: Exception) -> str:
            _, error = error_response_body(exc)  # logs what we did not expect
            return "".join(_sse(event) for event in renderer.fail(error["error"]["message"]))

        return EventStreamResponse(
            _stream(events, renderer, store),
            keepalive_s=services.settings.keepalive_s,
            stream_error=stream_error,
        )

    async def complete() -> Response:
        await drain(events, renderer.absorb)
        await store()
        return JSONResponse(renderer.response())

    return await unless_disconnected(http, complete)


@router.get("/v1/responses/{response_id}")
async def retrieve_response(
    response_id: str,
    services: Services = Depends(get_services),
    principal: Principal = Depends(authenticate),
) -> dict[str, Any]:
    return (await services.responses.load(response_id, principal.key_id)).response


@router.delete("/v1/responses/{response_id}")
async def delete_response(
    response_id: str,
    services: Services = Depends(get_services),
    principal: Principal = Depends(authenticate),
) -> dict[str, Any]:
    await services.responses.delete(response_id, principal.key_id)
    return {"id": response_id, "object": "response", "deleted": True}


@router.get("/v1/responses/{response_id}/input_items")
async def list_input_items(
    response_id: str,
    services: Services = Depends(get_services),
    principal: Principal = Depends(authenticate),
    order: str = Query("desc", pattern="^(asc|desc)$"),
    limit: int = Query(20, ge=1, le=100),
    after: str | None = None,
) -> dict[str, Any]:
    items = (await services.responses.load(response_id, principal.key_id)).input_items
    if order == "desc":
        items = items[::-1]
    if after is not None:
        ids = [i.get("id") for i in items]
        items = items[ids.index(after) + 1 :] if after in ids else []
    page = items[:limit]
    return {
        "object": "list",
        "data": page,
        "first_id": page[0]["id"] if page else None,
        "last_id": page[-1]["id"] if page else None,
        "has_more": len(items) > limit,
    }
