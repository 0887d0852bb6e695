"""``POST /v1/chat/completions`` bodies, and turning one into a ``RunRequest``."""

from __future__ import annotations

from typing import Annotated, Any, Literal, NotRequired, cast

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    StrictBool,
    ValidatorFunctionWrapHandler,
    WrapValidator,
    with_config,
)
from typing_extensions import TypedDict

from app.api.admission import admit
from app.api.deps import Services
from app.api.wire import MAX_INT, McpLimits, McpToolParam, ToolSearchParam, WireRequest
from app.engine.request import RunRequest
from app.errors import InvalidRequest
from app.llm.client import MessagesJson
from app.principal import Principal


class FunctionDefinition(BaseModel):
    model_config = ConfigDict(extra="allow")
    name: str = Field(pattern=r"^[a-zA-Z0-9_-]{1,64}$")
    description: str | None = None
    parameters: dict[str, Any] | None = None
    strict: bool | None = None


class FunctionToolParam(BaseModel):
    """A client function tool: passed to the model untouched."""

    model_config = ConfigDict(extra="allow")
    type: Literal["function"]
    function: FunctionDefinition


ChatTool = Annotated[
    McpToolParam | FunctionToolParam | ToolSearchParam, Field(discriminator="type")
]


class StreamOptions(BaseModel):
    include_usage: bool = False


@with_config(ConfigDict(extra="allow"))
class ToolCallFunction(TypedDict):
    name: str
    arguments: str


@with_config(ConfigDict(extra="allow"))
class ToolCallParam(TypedDict):
    id: str
    type: NotRequired[Literal["function"]]
    function: ToolCallFunction


_TEXT_ONLY = frozenset({"text"})
_PART_TYPES = {
    "user": frozenset({"text", "image_url", "input_audio", "file"}),
    "assistant": frozenset({"text", "refusal"}),
}
"""Content part types by role, as OpenAI's Chat Completions takes them (the rest: text)."""


@with_config(ConfigDict(extra="allow"))
class _Message(TypedDict):
    role: Literal["system", "developer", "user", "assistant", "tool"]
    content: NotRequired[str | list[dict[str, Any]] | None]
    name: NotRequired[str | None]
    tool_calls: NotRequired[list[ToolCallParam] | None]
    tool_call_id: NotRequired[str | None]


def _check_role_fields(message: _Message) -> dict[str, Any]:
    """What each role needs; the message as sent, without its nulls (a dict, not a model: a
    long history is validated once and never converted back)."""
    sent = cast(dict[str, Any], message)  # pydantic's copy, ours to change
    if None in sent.values():
        sent = {k: v for k, v in sent.items() if v is not None}
    role, content = sent["role"], sent.get("content")
    if role == "assistant":
        if content is None and not sent.get("tool_calls"):
            raise ValueError("an assistant message needs content or tool_calls")
    elif content is None:
        raise ValueError(f"a {role} message needs content")
    if role == "tool" and not sent.get("tool_call_id"):
        raise ValueError("a tool message needs tool_call_id")
    if isinstance(content, list):
        allowed = _PART_TYPES.get(role, _TEXT_ONLY)
        for part in content:
            kind = part.get("type")
            if not isinstance(kind, str) or kind not in allowed:  # a list is not even hashable
                raise ValueError(
                    f"a {role} message's content parts must have a type among: "
                    + ", ".join(sorted(allowed))
                )
            if kind == "text" and not isinstance(part.get("text"), str):
                raise ValueError("a text content part needs 'text'")
    if calls := sent.get("tool_calls"):
        for call in calls:
            call.setdefault("type", "function")
    return sent


ChatMessage = Annotated[_Message, AfterValidator(_check_role_fields)]
"""A message; what each role needs is checked here, the rest goes to the model as sent."""

_PLAIN_ROLES = frozenset({"system", "developer", "user", "assistant"})
_PLAIN_KEYS = frozenset({"role", "content", "name"})


def _plain(message: Any) -> bool:
    """A text message that ``ChatMessage`` accepts as it is (role, text content, a name)."""
    return (
        type(message) is dict
        and message.keys() <= _PLAIN_KEYS
        and message.get("role") in _PLAIN_ROLES
        and type(message.get("content")) is str
        and type(message.get("name", "")) is str
    )


def _all_plain(messages: list[Any]) -> bool:
    """Every message ``_plain``; a message of role and text content only is checked inline
    (240 such messages: 25 µs, against 60 through ``_plain`` each)."""
    for message in messages:
        if not (
            type(message) is dict
            and len(message) == 2
            and type(message.get("content")) is str
            and message.get("role") in _PLAIN_ROLES
        ) and not _plain(message):
            return False
    return True


class _TextMessages(list[dict[str, Any]]):
    """Messages ``_messages`` found all plain: there is no tool call or result among them."""


def _messages(value: Any, validate: ValidatorFunctionWrapHandler) -> list[dict[str, Any]]:
    """A history of plain text messages is taken as sent (each validated by ``ChatMessage``
    came back equal, at ten times the CPU: a long chat's largest cost, profiled); anything
    else is validated message by message, with its errors."""
    if type(value) is list and value and _all_plain(value):
        return _TextMessages(value)
    messages: list[dict[str, Any]] = validate(value)
    return messages


def _check_tool_results(messages: list[dict[str, Any]]) -> None:
    """Tool calls and tool messages must pair up as OpenAI requires: a tool message answers a
    tool call of an earlier assistant message, and an assistant message's tool calls are each
    answered by the tool messages right after it. Refused here, before anything runs, not by
    the provider after the MCP listing and the budget hold (and a provider that let it through
    would see an answer to nothing, or a call never answered)."""
    called: set[str] = set()
    unanswered: list[str] = []
    asked_at = 0
    for index, message in enumerate(messages):
        if message["role"] == "tool":
            if message["tool_call_id"] not in called:
                raise InvalidRequest(
                    "Invalid parameter: messages with role 'tool' must be a response to a "
                    "preceding message with 'tool_calls'; none has a tool call "
                    f"'{message['tool_call_id']}'.",
                    param=f"messages[{index}].tool_call_id",
                )
            if message["tool_call_id"] in unanswered:
                unanswered.remove(message["tool_call_id"])
            continue
        _check_answered(unanswered, asked_at)
        if calls := message.get("tool_calls"):
            unanswered = [call["id"] for call in calls]
            called.update(unanswered)
            asked_at = index
    _check_answered(unanswered, asked_at)


def _check_answered(unanswered: list[str], asked_at: int) -> None:
    if unanswered:
        raise InvalidRequest(
            "An assistant message with 'tool_calls' must be followed by tool messages "
            "responding to each 'tool_call_id'. The following tool_call_ids did not have "
            f"response messages: {', '.join(unanswered)}",
            param=f"messages[{asked_at}].tool_calls",
        )


class ChatCompletionRequest(WireRequest):
    """``POST /v1/chat/completions``; unknown fields are accepted and ignored, as OpenAI's
    clients send extras harmlessly."""

    model_config = ConfigDict(extra="allow")
    model: str = Field(min_length=1)
    messages: Annotated[list[ChatMessage], WrapValidator(_messages)] = Field(min_length=1)
    tools: list[ChatTool] | None = None
    stream: StrictBool | None = False
    stream_options: StreamOptions | None = None
    n: int | None = Field(default=None, ge=1, le=1)
    mcp_limits: McpLimits | None = None
    temperature: float | None = Field(default=None, ge=0, le=2)
    top_p: float | None = Field(default=None, ge=0, le=1)
    max_tokens: int | None = Field(default=None, ge=1, le=MAX_INT)
    max_completion_tokens: int | None = Field(default=None, ge=1, le=MAX_INT)
    stop: str | list[str] | None = None
    seed: int | None = None
    tool_choice: str | dict[str, Any] | None = None
    parallel_tool_calls: bool | None = None
    response_format: dict[str, Any] | None = None
    presence_penalty: float | None = Field(default=None, ge=-2, le=2)
    frequency_penalty: float | None = Field(default=None, ge=-2, le=2)
    logit_bias: dict[str, float] | None = None
    user: str | None = None
    reasoning_effort: str | None = None


MODEL_PARAMS = (
    "temperature",
    "top_p",
    "max_tokens",
    "max_completion_tokens",
    "stop",
    "seed",
    "tool_choice",
    "parallel_tool_calls",
    "response_format",
    "presence_penalty",
    "frequency_penalty",
    "logit_bias",
    "user",
    "reasoning_effort",
)
"""Fields passed through to the model when set."""


async def parse_chat(
    body: ChatCompletionRequest, services: Services, principal: Principal
) -> RunRequest:
    """The internal request for a chat completion."""
    messages = cast(list[dict[str, Any]], body.messages)  # checked dicts (_check_role_fields)
    text_only = isinstance(messages, _TextMessages)
    direct = services.engine.models.is_direct(body.model)
    if not text_only:
        _check_tool_results(messages)
    tools = [
        t if isinstance(t, McpToolParam | ToolSearchParam) else t.model_dump(exclude_none=True)
        for t in body.tools or []
    ]
    return await admit(
        services,
        principal,
        model=body.model,
        messages=messages,
        message_count=len(messages),
        tools=tools,
        params=body.model_dump(include=set(MODEL_PARAMS), exclude_none=True),
        mcp_limits=body.mcp_limits,
        stream=bool(body.stream),
        supports_approval=False,
        hidden_turns=True,
        text_only=text_only,
        # Encoded on arrival, while in memory's caches: a long history encoded later (cold,
        # after the awaits between) cost ten times the CPU, profiled. litellm takes dicts.
        encoded=MessagesJson.of(messages) if text_only and direct else None,
    )
