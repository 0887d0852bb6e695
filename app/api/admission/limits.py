"""A request may lower the configured run limits, never raise them."""

from __future__ import annotations

from app.api.wire import McpLimits
from app.config import Limits, RequestLimits
from app.errors import InvalidRequest


def effective_limits(configured: Limits, requested: McpLimits | None) -> Limits:
    """The configured limits, lowered (never raised) where the request asks."""
    if requested is None:
        return configured
    lowered = {
        name: min(value, getattr(configured, name))
        for name, value in requested.model_dump(exclude_none=True).items()
    }
    return configured.model_copy(update=lowered)


def check_request_size(
    limits: RequestLimits, *, messages: int, tools: int, mcp_servers: int
) -> None:
    """Refuse requests that carry more than the configured limits allow."""
    for count, limit, param, what in (
        (messages, limits.max_messages, "messages", "messages or input items"),
        (tools, limits.max_tools, "tools", "tools"),
        (mcp_servers, limits.max_mcp_servers, "tools", "MCP servers"),
    ):
        if count > limit:
            raise InvalidRequest(f"Too many {what}: {count} (at most {limit}).", param=param)
