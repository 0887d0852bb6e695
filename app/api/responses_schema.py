"""``POST /v1/responses`` body: OpenAI's Responses API fields that toolbridge honours."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StrictBool

from app.api.schemas import MAX_INT, McpToolParam, WireRequest


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


ResponsesTool = Annotated[McpToolParam | ResponsesFunctionTool, Field(discriminator="type")]


class ResponsesRequest(WireRequest):
    """Unknown fields that OpenAI's clients send harmlessly are accepted and ignored; the ones
    whose meaning we cannot honour are refused by name in ``app/api/responses.py``."""

    model_config = ConfigDict(extra="allow")
    model: str = Field(min_length=1)
    input: str | list[dict[str, Any]] = Field(default_factory=list)
    instructions: str | None = None
    tools: list[ResponsesTool] | None = None
    tool_choice: str | dict[str, Any] | None = None
    parallel_tool_calls: bool | None = None
    max_output_tokens: int | None = Field(default=None, ge=1, le=MAX_INT)
    max_tool_calls: int | None = Field(default=None, ge=0, le=MAX_INT)
    temperature: float | None = Field(default=None, ge=0, le=2)
    top_p: float | None = Field(default=None, ge=0, le=1)
    metadata: dict[str, str] | None = Field(default=None, max_length=16)
    store: StrictBool | None = True
    previous_response_id: str | None = None
    stream: StrictBool | None = False
    user: str | None = None
    text: dict[str, Any] | None = None
    reasoning: dict[str, Any] | None = None
