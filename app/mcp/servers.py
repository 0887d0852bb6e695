"""What the engine tells the MCP layer about one server to use in a run."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Literal

Transport = Literal["streamable_http", "sse", "stdio"]


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
    headers: Mapping[str, str] = field(default_factory=dict, repr=False)
    """Sent to this server only; secret, never logged or stored."""
    allowed_tools: frozenset[str] | None = None
    """None: every tool the server lists."""
    registered: bool = False
    """True for operator-registered servers (trusted configuration)."""

    def credential_hash(self) -> str:
        """A hash of the credentials sent: partitions cached private results, never reveals them."""
        material = json.dumps(sorted((k.lower(), v) for k, v in self.headers.items()))
        return hashlib.sha256(material.encode()).hexdigest()

    def target(self) -> str:
        """Identity of the server for caches: its URL, or its command line for stdio."""
        return self.url or " ".join(self.command)
