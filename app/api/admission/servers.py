"""Turning a request's ``mcp`` tools into the servers a run connects to.

A ``server_label`` alone names an operator-registered server; with ``server_url`` the caller
brings its own. Policy lives here, before any connection: the caller's key must allow the
server, a caller's URL must pass the SSRF check (``app/mcp/transport/ssrf.py``) and is pinned to the
address checked, and credentials go to their server only.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Sequence
from typing import Any

import mcp_types as types
from pydantic import ValidationError

from app.api.wire import AllowedToolsFilter, McpToolParam
from app.config import RegisteredServer
from app.errors import InvalidRequest, PermissionDenied
from app.mcp.servers import NEVER, ApprovalPolicy, ServerSpec, ToolFilter
from app.mcp.transport.ssrf import AddressPolicy, pin_url
from app.principal import Principal


def _tool_filter(value: list[str] | AllowedToolsFilter | None) -> ToolFilter | None:
    if value is None:
        return None
    if isinstance(value, AllowedToolsFilter):
        names = None if value.tool_names is None else frozenset(value.tool_names)
        return ToolFilter(tool_names=names, read_only=value.read_only)
    return ToolFilter(tool_names=frozenset(value))


def approval_policy(
    value: str | dict[str, Any] | None, *, omitted: ApprovalPolicy, param: str
) -> ApprovalPolicy:
    """OpenAI's ``require_approval``: "always", "never", or ``{"always": f, "never": f}``."""
    if value is None:
        return omitted
    if value in ("always", "never"):
        return ApprovalPolicy(default=value == "always")
    if not isinstance(value, dict) or not set(value) <= {"always", "never"}:
        raise InvalidRequest(
            "require_approval must be 'always', 'never', or an object with "
            "'always' and/or 'never' filters.",
            param=param,
        )
    try:
        filters = {
            key: _tool_filter(AllowedToolsFilter.model_validate(f)) for key, f in value.items()
        }
    except ValidationError as exc:
        raise InvalidRequest(
            f"Invalid approval filter: {exc.errors()[0]['msg']}", param=param
        ) from None
    return ApprovalPolicy(default=True, always=filters.get("always"), never=filters.get("never"))


_HEADER_NAME = re.compile(r"^[!#$%&'*+.^_`|~0-9A-Za-z-]+$")
"""An RFC 9110 token."""
_HEADER_VALUE = re.compile(r"^[\t\x20-\x7e\x80-\xff]*$")
"""Visible latin-1 text, spaces and tabs: what HTTP/1.1 can carry (no CR, LF or NUL)."""
OWNED_HEADERS = frozenset(
    {
        "host",
        "content-length",
        "transfer-encoding",
        "connection",
        "keep-alive",
        "upgrade",
        "te",
        "trailer",
        "mcp-protocol-version",
        "mcp-session-id",
    }
)
"""Headers the transport and the MCP session set: a caller may not override them."""


def _checked_headers(tool: McpToolParam, param: str) -> dict[str, str]:
    """The headers to send to the caller's server; one that cannot be sent as given, or that
    toolbridge owns, is the caller's mistake (400 naming it), and nothing is sent."""
    headers = dict(tool.headers or {})
    for name, value in headers.items():
        where = f"{param}.headers.{name}"
        if not _HEADER_NAME.match(name):
            raise InvalidRequest(
                "Header names must be HTTP tokens (no spaces, colons or control characters).",
                param=where,
            )
        if name.lower() in OWNED_HEADERS:
            raise InvalidRequest(
                f"The header '{name}' is set by toolbridge and cannot be given.", param=where
            )
        if not _HEADER_VALUE.match(value):
            raise InvalidRequest(
                "Header values must be latin-1 text without CR, LF or other control characters.",
                param=where,
            )
    if tool.authorization:
        if not _HEADER_VALUE.match(tool.authorization):
            raise InvalidRequest(
                "authorization must be latin-1 text without CR, LF or other control characters.",
                param=f"{param}.authorization",
            )
        headers["Authorization"] = f"Bearer {tool.authorization}"
    return headers


async def resolve_servers(
    tools: Sequence[tuple[int, McpToolParam]],
    registry: Sequence[RegisteredServer],
    principal: Principal,
    policy: AddressPolicy,
    *,
    default_approval: ApprovalPolicy = NEVER,
    known_tools: dict[str, tuple[types.Tool, ...]] | None = None,
) -> list[ServerSpec]:
    """Resolve the request's mcp tools (with their index in ``tools``) to server specs.

    ``policy`` says where caller-supplied URLs may go; ``default_approval`` applies where
    ``require_approval`` is omitted; ``known_tools`` are lists already in the conversation.
    """
    registered = {s.label: s for s in registry}
    specs: list[ServerSpec] = []
    seen: set[str] = set()
    for index, tool in tools:
        param = f"tools[{index}]"
        if tool.server_label in seen:
            raise InvalidRequest(
                f"Duplicate server_label '{tool.server_label}'.", param=f"{param}.server_label"
            )
        seen.add(tool.server_label)
        if tool.connector_id is not None or tool.tunnel_id is not None:
            raise InvalidRequest(
                "connector_id and tunnel_id are not supported by this server; use server_url.",
                param=f"{param}.{'connector_id' if tool.connector_id is not None else 'tunnel_id'}",
            )
        if tool.allowed_callers is not None and tool.allowed_callers != ["direct"]:
            raise InvalidRequest(
                'Only direct calls are supported: set allowed_callers to ["direct"] or omit it '
                "(programmatic tool calling is not available on this server).",
                param=f"{param}.allowed_callers",
            )
        if tool.server_url is None:
            spec = _registered(tool, param, registered, principal)
        else:
            spec = await _caller_supplied(tool, tool.server_url, param, principal, policy)
        approval = approval_policy(
            tool.require_approval, omitted=default_approval, param=f"{param}.require_approval"
        )
        known = (known_tools or {}).get(tool.server_label)
        specs.append(
            dataclasses.replace(
                spec,
                approval=approval,
                known_tools=known,
                deferred=bool(tool.defer_loading),
                description=tool.server_description or spec.description,
                prefer_structured_content=(
                    spec.prefer_structured_content
                    if tool.prefer_structured_content is None
                    else tool.prefer_structured_content
                ),
            )
        )
    return specs


def _registered(
    tool: McpToolParam, param: str, registered: dict[str, RegisteredServer], principal: Principal
) -> ServerSpec:
    server = registered.get(tool.server_label)
    if server is None:
        raise InvalidRequest(
            f"Unknown MCP server '{tool.server_label}': give server_url, "
            "or use the label of a registered server.",
            param=f"{param}.server_url",
        )
    if not principal.may_use_server(server.label):
        raise PermissionDenied(
            f"This API key may not use MCP server '{server.label}'.",
            param=f"{param}.server_label",
        )
    # Registered servers keep their own credentials; the caller's are added for this run, and
    # may not replace one the operator configured (Authorization included).
    configured = server.headers()
    added = _checked_headers(tool, param)
    taken = {name.lower() for name in configured}
    for name in added:
        if name.lower() in taken:
            where = f"{param}.authorization" if name == "Authorization" else f"{param}.headers"
            raise InvalidRequest(
                f"The header '{name}' is configured for MCP server '{server.label}' by the "
                "operator and cannot be replaced.",
                param=where if name == "Authorization" else f"{where}.{name}",
            )
    return ServerSpec(
        label=server.label,
        url=server.url,
        transport=server.transport,
        command=tuple(server.command or ()),
        env=server.environment(),
        headers={**configured, **added},
        allowed_tools=_tool_filter(tool.allowed_tools),
        registered=True,
        elicitation=server.elicitation,
        sampling=server.sampling,
        sampling_rate_per_minute=server.sampling_rate_per_minute,
        sampling_budget_usd=server.sampling_budget_usd,
        prefer_structured_content=server.prefer_structured_content,
        description=server.description,
        oauth=server.auth_type == "oauth2",
    )


async def _caller_supplied(
    tool: McpToolParam, url: str, param: str, principal: Principal, policy: AddressPolicy
) -> ServerSpec:
    if not principal.may_use_url(url):
        raise PermissionDenied(
            "This API key may not use this server_url (only registered MCP servers, or URLs "
            "matching its patterns).",
            param=f"{param}.server_url",
        )
    headers = _checked_headers(tool, param)
    pinned = await pin_url(url, policy, param=f"{param}.server_url")
    return ServerSpec(
        label=tool.server_label,
        url=url,
        headers=headers,
        allowed_tools=_tool_filter(tool.allowed_tools),
        pinned=pinned,
        owner=principal.key_id,
        sampling=principal.allow_sampling,
    )
