"""``POST /v1/responses`` bodies (OpenAI's Responses API fields that toolbridge honours), and
turning one into a ``RunRequest``: the conversation folded from items (``items``), tools and
model parameters mapped to the engine's terms."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, Any, Literal

import anyio
from pydantic import BaseModel, ConfigDict, Field, StrictBool

from app.api.admission import admit
from app.api.deps import Services
from app.api.responses import ids
from app.api.responses.items import fold
from app.api.wire import MAX_INT, McpLimits, McpToolParam, ToolSearchParam, WireRequest
from app.engine.request import RunRequest
from app.errors import InvalidRequest, NotFound
from app.ids import stored_id
from app.mcp.naming import exposed_name
from app.mcp.servers import ApprovalPolicy
from app.principal import Principal
from app.redact import redact_url
from app.store.background import TERMINAL
from app.store.responses import StoredResponse


class ResponsesFunctionTool(BaseModel):
    """A client function tool in the Responses shape (flat, not nested under ``function``)."""

    model_config = ConfigDict(extra="allow")
    type: Literal["function"]
    name: str = Field(pattern=r"^[a-zA-Z0-9_-]{1,64}$")
    description: str | None = None
    parameters: dict[str, Any] | None = None
    strict: bool | None = None

    def as_chat_tool(self) -> dict[str, Any]:
        function = self.model_dump(exclude={"type"}, exclude_none=True)
        return {"type": "function", "function": function}


ResponsesTool = Annotated[
    McpToolParam | ResponsesFunctionTool | ToolSearchParam, Field(discriminator="type")
]


class ConversationRef(BaseModel):
    model_config = ConfigDict(extra="ignore")

    id: str = Field(min_length=1)


class ResponsesRequest(WireRequest):
    """Unknown fields that OpenAI's clients send harmlessly are accepted and ignored; the ones
    whose meaning we cannot honour are refused by name in ``parse_responses``."""

    model_config = ConfigDict(extra="allow")
    model: str = Field(min_length=1)
    input: str | list[dict[str, Any]] = Field(default_factory=list)
    instructions: str | None = None
    tools: list[ResponsesTool] | None = None
    tool_choice: str | dict[str, Any] | None = None
    parallel_tool_calls: bool | None = None
    max_output_tokens: int | None = Field(default=None, ge=1, le=MAX_INT)
    max_tool_calls: int | None = Field(default=None, ge=0, le=MAX_INT)
    mcp_limits: McpLimits | None = None
    """toolbridge extension, as in Chat Completions: lower the run's limits."""
    temperature: float | None = Field(default=None, ge=0, le=2)
    top_p: float | None = Field(default=None, ge=0, le=1)
    metadata: dict[str, str] | None = Field(default=None, max_length=16)
    store: StrictBool | None = True
    previous_response_id: str | None = None
    conversation: str | ConversationRef | None = None
    """A conversation (Conversations API): its items are the context, and this response's
    input and output are added to it."""
    stream: StrictBool | None = False
    background: StrictBool | None = False
    """Run after the request is answered (``app/api/responses/background.py``)."""
    user: str | None = None
    text: dict[str, Any] | None = None
    reasoning: dict[str, Any] | None = None


ALWAYS = ApprovalPolicy(default=True)
"""OpenAI's default for an omitted ``require_approval``."""
_REFUSED_FIELDS = {
    "prompt": "Prompt templates are",
}


@dataclass(frozen=True, slots=True)
class ParsedResponses:
    """The run, plus the items a stored response keeps (this input, the earlier conversation)."""

    run: RunRequest
    input_items: list[dict[str, Any]]
    previous: StoredResponse | None
    """The response this one continues (``previous_response_id``), if any."""
    conversation: tuple[str, str] | None = None
    """The conversation this response reads and extends, and its hold on it, if any."""


def as_items(value: str | list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The input as items in OpenAI's stored form: each with an id, text as content parts."""
    raw = [{"role": "user", "content": value}] if isinstance(value, str) else value
    items = []
    for original in raw:
        item = dict(original) if isinstance(original, dict) else original
        if isinstance(item, dict):
            kind = item.setdefault("type", "message")
            item.setdefault("id", ids.message_id() if kind == "message" else ids.item_id())
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


def _limits(body: ResponsesRequest) -> McpLimits | None:
    """``mcp_limits`` with OpenAI's ``max_tool_calls`` folded in (the lower one wins)."""
    if body.max_tool_calls is None:
        return body.mcp_limits
    limits = body.mcp_limits or McpLimits()
    asked = [n for n in (limits.max_tool_calls, body.max_tool_calls) if n is not None]
    return limits.model_copy(update={"max_tool_calls": min(asked)})


async def parse_responses(
    body: ResponsesRequest, services: Services, principal: Principal, *, counting: bool = False
) -> ParsedResponses:
    """The run for a Responses request, with the items it will store. ``counting``: the run
    is only counted, so nothing is held (the conversation, a budget, a storage quota)."""
    for name, what in _REFUSED_FIELDS.items():
        if (body.model_extra or {}).get(name):
            raise InvalidRequest(f"{what} not supported by this server.", param=name)
    history: list[dict[str, Any]] = []
    previous = None
    conversation_id = conversation_of(body)
    if conversation_id is not None:
        if body.previous_response_id:
            raise InvalidRequest(
                "Use either 'conversation' or 'previous_response_id', not both.",
                param="conversation",
            )
        if counting:
            history = await services.conversations.items(
                conversation_id, principal.key_id, "conversation"
            )
            return await _parse(body, services, principal, history, None, None, counting=True)
        # Held before its items are read, so no other response can add to them meanwhile;
        # released when this one ends (``routes._in_conversation``), or now if it cannot start.
        hold = stored_id()
        await services.conversations.hold(conversation_id, principal.key_id, hold)
        try:
            history = await services.conversations.items(
                conversation_id, principal.key_id, "conversation"
            )
            return await _parse(body, services, principal, history, None, (conversation_id, hold))
        except BaseException:
            with anyio.CancelScope(shield=True):
                await services.conversations.release(conversation_id, hold)
            raise
    if body.previous_response_id:
        previous = await _previous(services, body.previous_response_id, principal.key_id)
        history = await services.responses.conversation(previous)
    return await _parse(body, services, principal, history, previous, None, counting=counting)


async def _previous(services: Services, response_id: str, owner: str) -> StoredResponse:
    """The stored response to continue; a 400 for a background one that has not ended (it is
    stored when it ends), rather than a 404 for a response its caller can see."""
    try:
        return await services.responses.load(response_id, owner, param="previous_response_id")
    except NotFound:
        live = await services.background.store.state(response_id, owner)
        if live is not None and live["status"] not in TERMINAL:
            raise InvalidRequest(
                f"Previous response '{response_id}' is still {live['status']}: continue it "
                "once it has ended.",
                param="previous_response_id",
            ) from None
        raise


async def _parse(
    body: ResponsesRequest,
    services: Services,
    principal: Principal,
    history: list[dict[str, Any]],
    previous: StoredResponse | None,
    held: tuple[str, str] | None,
    *,
    counting: bool = False,
) -> ParsedResponses:
    if body.background and body.store is False:
        raise InvalidRequest("A background response is stored: store must be true.", param="store")
    if body.store is not False and not counting:
        await services.responses.check_quota(principal.key_id)  # refused before anything runs
    input_items = as_items(body.input)
    if held is not None:
        # Refused now, not once the run has been paid for and its items cannot be added: its
        # input, and at least one output item (the answer).
        added = len(input_items) + 1
        services.conversations.check_room(len(history), added, param="conversation")
    conversation = fold(
        history,
        input_items,
        instructions=body.instructions,
        max_output_chars=services.settings.limits.max_tool_output_chars,
        named=("conversation.items" if body.conversation else "previous_response.items", "input"),
    )
    if not conversation.messages:
        raise InvalidRequest("input is empty: give a message, or instructions.", param="input")
    tools = [
        t if isinstance(t, McpToolParam | ToolSearchParam) else t.as_chat_tool()
        for t in body.tools or []
    ]
    request = await admit(
        services,
        principal,
        model=body.model,
        messages=conversation.messages,
        message_count=len(history) + len(input_items),
        tools=tools,
        params=_model_params(body),
        mcp_limits=_limits(body),
        stream=bool(body.stream),
        default_approval=ALWAYS,
        known_tools=conversation.known_tools,
        approvals=conversation.approvals,
        approvals_at=conversation.approvals_at,
        counting=counting,
    )
    return ParsedResponses(request, input_items, previous, held)


def conversation_of(body: ResponsesRequest) -> str | None:
    """The id of the conversation the request names, if any."""
    ref = body.conversation
    return ref.id if isinstance(ref, ConversationRef) else ref


def echoed_fields(body: ResponsesRequest) -> dict[str, Any]:
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
        "conversation": {"id": cid} if (cid := conversation_of(body)) else None,
        "store": body.store is not False,
        "user": body.user,
        "text": body.text or {"format": {"type": "text"}},
        "reasoning": body.reasoning or {"effort": None, "summary": None},
        "truncation": "disabled",
        "background": bool(body.background),
    }
