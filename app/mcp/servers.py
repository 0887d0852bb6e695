"""What the engine tells the MCP layer about one server to use in a run."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Literal

import mcp_types as types

from app.mcp.transport.ssrf import PinnedUrl

Transport = Literal["streamable_http", "sse", "stdio"]


@dataclass(frozen=True, slots=True, kw_only=True)
class ToolFilter:
    """OpenAI's tool filter: names, and/or the ``readOnlyHint`` annotation."""

    tool_names: frozenset[str] | None = None
    read_only: bool | None = None

    def matches(self, tool: types.Tool) -> bool:
        if self.tool_names is not None and tool.name in self.tool_names:
            return True
        if self.read_only is not None:
            hint = bool(tool.annotations and tool.annotations.read_only_hint)
            return hint == self.read_only
        return False


@dataclass(frozen=True, slots=True, kw_only=True)
class ApprovalPolicy:
    """Which calls wait for the caller's approval (OpenAI's ``require_approval``).

    A tool matched by ``never`` runs at once; otherwise one matched by ``always``, or any tool
    when ``default`` is true, waits. OpenAI's default for an omitted field is "always".
    """

    default: bool = True
    always: ToolFilter | None = None
    never: ToolFilter | None = None

    def requires_approval(self, tool: types.Tool) -> bool:
        if self.never is not None and self.never.matches(tool):
            return False
        if self.always is not None and self.always.matches(tool):
            return True
        return self.default


NEVER = ApprovalPolicy(default=False)


@dataclass(frozen=True, slots=True, kw_only=True)
class ServerSpec:
    """One MCP server as a run uses it."""

    label: str
    """The caller's ``server_label``; prefixes the tool names the model sees."""
    url: str | None = None
    """Endpoint for HTTP transports."""
    transport: Transport = "streamable_http"
    command: tuple[str, ...] = ()
    """stdio only (operator-registered servers only)."""
    env: Mapping[str, str] = field(default_factory=dict, repr=False)
    """stdio only: the server's own environment variables (may hold secrets)."""
    headers: Mapping[str, str] = field(default_factory=dict, repr=False)
    """Sent to this server only; secret, never logged or stored."""
    allowed_tools: ToolFilter | None = None
    """None: every tool the server lists."""
    approval: ApprovalPolicy = NEVER
    known_tools: tuple[types.Tool, ...] | None = None
    """Tools already listed earlier in the conversation: reused, not fetched again."""
    registered: bool = False
    """True for operator-registered servers (trusted configuration)."""
    elicitation: bool = True
    """Declare elicitation (and decline every request); False: do not declare it."""
    sampling: bool = False
    """Answer ``sampling/createMessage`` for this server (registered opt-in, or key policy)."""
    sampling_rate_per_minute: int | None = None
    """This server's own rate limit (registered servers); None: the default."""
    sampling_budget_usd: float | None = None
    """This server's own sampling budget (registered servers)."""
    prefer_structured_content: bool = False
    """The model reads results' ``structuredContent`` instead of their text."""
    deferred: bool = False
    """The tools are offered only once a tool search loads them (``defer_loading``)."""
    description: str | None = None
    """What the server is for, shown to the model when its tools are deferred."""
    pinned: PinnedUrl | None = None
    """For a caller-supplied URL: the checked address every connection goes to (SSRF)."""
    owner: str | None = None
    """For a caller-supplied URL: the key that named it, whose connection limit applies."""
    oauth: bool = False
    """A registered server toolbridge authenticates to itself (``app/mcp/transport/oauth.py``)."""

    def credential_hash(self) -> str:
        """A hash of the credentials sent: partitions cached private results, never reveals them."""
        material = json.dumps(sorted((k.lower(), v) for k, v in self.headers.items()))
        return hashlib.sha256(material.encode()).hexdigest()

    def target(self) -> str:
        """Identity of the server for caches: its URL, or its command line for stdio."""
        return self.url or " ".join(self.command)
