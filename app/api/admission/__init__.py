"""Admission: what every request goes through before its run, whichever endpoint it came from.

The model and the key's budget are checked, tools are split into MCP servers and the caller's
own function tools, the request's size is checked, the servers are resolved under the key's
policy and the SSRF guard, and the run's limits are settled: the result is a ``RunRequest``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import mcp_types as types

from app.api.admission.limits import check_request_size, effective_limits
from app.api.admission.servers import resolve_servers
from app.api.deps import Services
from app.api.wire import McpLimits, McpToolParam, ToolSearchParam
from app.engine.events import ProgressFeed
from app.engine.request import ApprovalDecision, RunRequest
from app.engine.search import FUNCTION_NAME as SEARCH_FUNCTION
from app.errors import InvalidRequest
from app.llm.client import Message, MessagesJson
from app.mcp.servers import NEVER, ApprovalPolicy
from app.principal import Principal


def split_tools(
    tools: Sequence[McpToolParam | ToolSearchParam | dict[str, Any]], *, supports_approval: bool
) -> tuple[list[tuple[int, McpToolParam]], list[dict[str, Any]]]:
    """The MCP tools (with their index) and the caller's function tools, after checking what
    an endpoint cannot honour: approvals where there is no approval protocol, a client-executed
    tool search, ``defer_loading`` without a ``tool_search`` tool."""
    mcp_tools: list[tuple[int, McpToolParam]] = []
    client_tools: list[dict[str, Any]] = []
    searches = [(i, t) for i, t in enumerate(tools) if isinstance(t, ToolSearchParam)]
    for index, search in searches:
        if search.execution == "client":
            raise InvalidRequest(
                "Client-executed tool search is not supported: omit 'execution' or set it "
                "to 'server' (toolbridge runs the search).",
                param=f"tools[{index}].execution",
            )
    for index, tool in enumerate(tools):
        if isinstance(tool, ToolSearchParam):
            continue
        if not isinstance(tool, McpToolParam):
            if searches and tool.get("function", {}).get("name") == SEARCH_FUNCTION:
                raise InvalidRequest(
                    f"'{SEARCH_FUNCTION}' is the name of the tool search function: give your "
                    "own function another name.",
                    param=f"tools[{index}]",
                )
            client_tools.append(tool)
            continue
        if not supports_approval and tool.require_approval not in (None, "never"):
            raise InvalidRequest(
                "Chat Completions has no approval protocol: set require_approval to "
                "'never', or use /v1/responses for MCP approvals.",
                param=f"tools[{index}].require_approval",
            )
        if tool.defer_loading and not searches:
            raise InvalidRequest(
                'defer_loading needs a {"type": "tool_search"} tool in the same request.',
                param=f"tools[{index}].defer_loading",
            )
        mcp_tools.append((index, tool))
    return mcp_tools, client_tools


async def admit(
    services: Services,
    principal: Principal,
    *,
    model: str,
    messages: list[Message],
    message_count: int,
    tools: Sequence[McpToolParam | ToolSearchParam | dict[str, Any]],
    params: dict[str, Any],
    mcp_limits: McpLimits | None,
    stream: bool,
    supports_approval: bool = True,
    default_approval: ApprovalPolicy = NEVER,
    known_tools: dict[str, tuple[types.Tool, ...]] | None = None,
    hidden_turns: bool = False,
    approvals: Sequence[ApprovalDecision] = (),
    approvals_at: int | None = None,
    text_only: bool = False,
    encoded: MessagesJson | None = None,
    counting: bool = False,
) -> RunRequest:
    """The run for a request, or the error that refuses it (4xx; nothing has run).

    ``tools`` are the request's tools in order: MCP tools as parsed, the caller's function
    tools already in Chat Completions' shape. ``message_count`` is what counts against the
    message limit (input items in Responses, earlier ones included). ``counting``: the run is
    only counted (``/v1/responses/input_tokens``), so the budget is not asked."""
    services.authorize_model(principal, model)
    mcp_tools, client_tools = split_tools(tools, supports_approval=supports_approval)
    check_request_size(
        services.settings.request_limits,
        messages=message_count,
        tools=len(tools),
        mcp_servers=len(mcp_tools),
    )
    if not counting:
        await services.check_budget(principal, model, messages, client_tools)
    servers = await resolve_servers(
        mcp_tools,
        services.registered_servers,
        principal,
        services.address_policy,
        default_approval=default_approval,
        known_tools=known_tools,
    )
    return RunRequest(
        principal=principal,
        model=model,
        messages=messages,
        servers=servers,
        client_tools=client_tools,
        params=params,
        limits=effective_limits(services.settings.limits, mcp_limits),
        stream_model=stream,
        progress=ProgressFeed() if stream else None,
        hidden_turns=hidden_turns,
        approvals=list(approvals),
        approvals_at=approvals_at,
        text_only=text_only,
        encoded=encoded,
    )
