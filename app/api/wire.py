"""What both endpoints' request bodies share, as pydantic models: the ``mcp`` tool, the
``mcp_limits`` extension, and the base that keeps text valid Unicode. Untrusted JSON becomes
typed data here."""

from __future__ import annotations

from typing import Any, Literal

import orjson
from pydantic import BaseModel, ConfigDict, Field, ValidationInfo, model_validator

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
    allowed_callers: list[Literal["direct", "programmatic"]] | None = None
    defer_loading: bool | None = None
    """Offer the server's tools only once a ``tool_search`` finds them."""
    prefer_structured_content: bool | None = None
    """toolbridge extension: the model reads results' ``structuredContent`` (as JSON) instead
    of their text (some clients, OpenAI's Codex among them, prefer structured results)."""


class McpLimits(BaseModel):
    """toolbridge extension: lower the configured run limits for this request."""

    model_config = ConfigDict(extra="forbid")
    max_turns: int | None = Field(default=None, ge=1)
    max_tool_calls: int | None = Field(default=None, ge=0, le=MAX_INT)
    tool_timeout_s: float | None = Field(default=None, gt=0)
    max_tool_output_chars: int | None = Field(default=None, ge=256)


PARSED_BY_ORJSON = "parsed_by_orjson"
"""Validation context key: the data came from ``orjson.loads`` (valid Unicode throughout)."""


class WireRequest(BaseModel):
    """Base of request bodies: text must be valid Unicode all the way down (a lone surrogate
    from a ``\\ud800`` escape cannot be sent to any provider)."""

    @model_validator(mode="before")
    @classmethod
    def _check_unicode(cls, data: Any, info: ValidationInfo) -> Any:
        if info.context is not None and info.context.get(PARSED_BY_ORJSON):
            return data  # orjson refuses lone surrogates: nothing here can hold one
        try:
            orjson.dumps(data)  # refuses a str that is not valid UTF-8, as sending it would
        except orjson.JSONEncodeError as exc:
            if "surrogates" in str(exc):
                raise ValueError("text contains an unpaired surrogate (invalid Unicode)") from None
            # otherwise not JSON-shaped: the field validators say what is wrong
        return data


class ToolSearchParam(BaseModel):
    """``{"type": "tool_search"}``: search the tools of servers marked ``defer_loading``."""

    model_config = ConfigDict(extra="allow")
    type: Literal["tool_search"]
    execution: Literal["server", "client"] | None = None


def cursor_page(
    items: list[dict[str, Any]], *, after: str | None, limit: int, order: str
) -> dict[str, Any]:
    """A page of ``items`` (oldest first) as OpenAI lists them: ``order``, then the ``limit``
    items after the one whose id is ``after`` (an id not there: nothing more)."""
    ordered = items[::-1] if order == "desc" else items
    if after is not None:
        ids = [i.get("id") for i in ordered]
        ordered = ordered[ids.index(after) + 1 :] if after in ids else []
    page = ordered[:limit]
    return {
        "object": "list",
        "data": page,
        "first_id": page[0]["id"] if page else None,
        "last_id": page[-1]["id"] if page else None,
        "has_more": len(ordered) > limit,
    }
