"""Request bodies as pydantic models: the edge where untrusted JSON becomes typed data."""

from __future__ import annotations

import json
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StrictBool, model_validator

MAX_INT = 2**31 - 1
"""Bound for counts: larger ones are mistakes, and some providers overflow on them."""
LABEL_PATTERN = r"^[a-zA-Z0-9_-]{1,64}$"


class AllowedToolsFilter(BaseModel):
    """OpenAI's filter form of ``allowed_tools``."""

    model_config = ConfigDict(extra="forbid")
    tool_names: list[str] | None = None
    read_only: bool | None = None


class McpToolParam(BaseModel):
    """An ``{"type": "mcp", ...}`` tool, with OpenAI's Responses API fields."""

    model_config = ConfigDict(extra="allow")
    type: Literal["mcp"]
    server_label: str = Field(pattern=LABEL_PATTERN)
    server_url: str | None = Field(default=None, max_length=2048)
    server_description: str | None = None
    headers: dict[str, str] | None = None
    authorization: str | None = None
    allowed_tools: list[str] | AllowedToolsFilter | None = None
    require_approval: Literal["always", "never"] | dict[str, Any] | None = None
    connector_id: str | None = None
    tunnel_id: str | None = None


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


ChatTool = Annotated[McpToolParam | FunctionToolParam, Field(discriminator="type")]


class StreamOptions(BaseModel):
    include_usage: bool = False


class McpLimits(BaseModel):
    """toolbridge extension: lower the configured run limits for this request."""

    model_config = ConfigDict(extra="forbid")
    max_turns: int | None = Field(default=None, ge=1)
    max_tool_calls: int | None = Field(default=None, ge=0, le=MAX_INT)
    tool_timeout_s: float | None = Field(default=None, gt=0)
    max_tool_output_chars: int | None = Field(default=None, ge=256)


class ToolCallFunction(BaseModel):
    model_config = ConfigDict(extra="allow")
    name: str
    arguments: str


class ToolCallParam(BaseModel):
    model_config = ConfigDict(extra="allow")
    id: str
    type: Literal["function"] = "function"
    function: ToolCallFunction


class ChatMessage(BaseModel):
    """A message; what each role needs is checked here, the rest goes to the model as sent."""

    model_config = ConfigDict(extra="allow")
    role: Literal["system", "developer", "user", "assistant", "tool"]
    content: str | list[dict[str, Any]] | None = None
    name: str | None = None
    tool_calls: list[ToolCallParam] | None = None
    tool_call_id: str | None = None

    @model_validator(mode="after")
    def _check_role_fields(self) -> ChatMessage:
        if self.role == "assistant":
            if self.content is None and not self.tool_calls:
                raise ValueError("an assistant message needs content or tool_calls")
        elif self.content is None:
            raise ValueError(f"a {self.role} message needs content")
        if self.role == "tool" and not self.tool_call_id:
            raise ValueError("a tool message needs tool_call_id")
        return self


class WireRequest(BaseModel):
    """Base of request bodies: text must be valid Unicode all the way down (a lone surrogate
    from a ``\\ud800`` escape cannot be sent to any provider)."""

    @model_validator(mode="before")
    @classmethod
    def _check_unicode(cls, data: Any) -> Any:
        try:
            json.dumps(data, ensure_ascii=False).encode()
        except UnicodeEncodeError:
            raise ValueError("text contains an unpaired surrogate (invalid Unicode)") from None
        except (TypeError, ValueError):
            pass  # not JSON-shaped: the field validators say what is wrong
        return data


class ChatCompletionRequest(WireRequest):
    """``POST /v1/chat/completions``; unknown fields are accepted and ignored, as OpenAI's
    clients send extras harmlessly."""

    model_config = ConfigDict(extra="allow")
    model: str = Field(min_length=1)
    messages: list[ChatMessage] = Field(min_length=1)
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
