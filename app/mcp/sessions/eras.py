"""Which protocol era to speak to an MCP server, and why each fallback exists.

Servers come in three eras. 2026-07-28 servers answer ``server/discover`` and are stateless
(one HTTP request per call); 2025-11-25 Streamable HTTP servers need ``initialize`` and keep a
session; older servers speak only HTTP+SSE, a different transport. The SDK's ``auto`` mode tries
discover and falls back to initialize by itself; it cannot fall back to SSE.

- A remembered era (``EraStore``, shared by every replica) is tried first, so a warm 2026-07-28
  server costs no discover probe (its ``DiscoverResult`` goes to the SDK as ``prior_discover``)
  and a 2025-11-25 server no failed one.
- A remembered era that fails is forgotten (the server was redeployed), and the server is
  probed afresh.
- A fresh probe is ``auto``; a ``streamable_http`` server that fails it is tried over SSE last,
  since many older deployments are SSE-only behind the URL they publish.
- stdio and ``sse`` servers are configured as such: no probe, nothing to remember.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import mcp_types as types
from mcp_types.version import MODERN_PROTOCOL_VERSIONS

from app.mcp.servers import ServerSpec
from app.store.mcp_cache import Era


@dataclass(frozen=True, slots=True)
class Attempt:
    """One way to open a server."""

    era: Era | None
    """None: a fresh ``auto`` probe."""
    remembered: bool = False


def attempts(spec: ServerSpec, remembered: Era | None) -> list[Attempt]:
    """The ways to try, in order."""
    tries = [Attempt(remembered, remembered=True)] if remembered is not None else []
    tries.append(Attempt(None))
    if spec.transport == "streamable_http":
        tries.append(Attempt("sse"))
    return tries


def uses_sse(spec: ServerSpec, attempt: Attempt) -> bool:
    """Whether an attempt speaks the old HTTP+SSE transport."""
    return spec.transport == "sse" or attempt.era == "sse"


def sdk_mode(spec: ServerSpec, attempt: Attempt) -> tuple[str, types.DiscoverResult | None]:
    """The SDK client's ``mode`` and ``prior_discover`` for an attempt."""
    era = attempt.era
    if era in ("legacy", "sse") or spec.transport != "streamable_http":
        return "legacy", None
    if isinstance(era, types.DiscoverResult):
        mutual = [v for v in MODERN_PROTOCOL_VERSIONS if v in era.supported_versions]
        if mutual:
            return mutual[-1], era
    return "auto", None


def to_remember(spec: ServerSpec, attempt: Attempt, session: Any) -> Era | None:
    """What to remember after an attempt succeeded (None: nothing new)."""
    if attempt.remembered or spec.transport != "streamable_http":
        return None
    if attempt.era == "sse":
        return "sse"
    discovered: types.DiscoverResult | None = session.discover_result
    return discovered or "legacy"
