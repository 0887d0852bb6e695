"""The era policy: which ways to open a server, in which order, and what is remembered."""

from __future__ import annotations

from types import SimpleNamespace

import mcp_types as types

from app.mcp.servers import ServerSpec
from app.mcp.sessions.eras import Attempt, attempts, sdk_mode, to_remember, uses_sse

HTTP = ServerSpec(label="s", url="http://s/mcp")
SSE = ServerSpec(label="s", url="http://s/sse", transport="sse")
STDIO = ServerSpec(label="s", transport="stdio", command=("server",))
MODERN = types.DiscoverResult(
    supported_versions=["2026-07-28"],
    capabilities=types.ServerCapabilities(),
    server_info=types.Implementation(name="s", version="1"),
)


def test_a_remembered_era_is_tried_first_then_a_fresh_probe_then_sse() -> None:
    assert attempts(HTTP, None) == [Attempt(None), Attempt("sse")]
    assert attempts(HTTP, MODERN) == [
        Attempt(MODERN, remembered=True),
        Attempt(None),
        Attempt("sse"),
    ]
    assert attempts(SSE, None) == [Attempt(None)]
    assert attempts(STDIO, None) == [Attempt(None)]


def test_sdk_mode_per_attempt() -> None:
    assert sdk_mode(HTTP, Attempt(None)) == ("auto", None)
    assert sdk_mode(HTTP, Attempt(MODERN, remembered=True)) == ("2026-07-28", MODERN)
    assert sdk_mode(HTTP, Attempt("legacy", remembered=True)) == ("legacy", None)
    assert sdk_mode(STDIO, Attempt(None)) == ("legacy", None)
    assert uses_sse(HTTP, Attempt("sse")) and uses_sse(SSE, Attempt(None))
    assert not uses_sse(HTTP, Attempt(None))


def test_what_is_remembered_after_success() -> None:
    modern, legacy = SimpleNamespace(discover_result=MODERN), SimpleNamespace(discover_result=None)
    assert to_remember(HTTP, Attempt(None), modern) == MODERN
    assert to_remember(HTTP, Attempt(None), legacy) == "legacy"
    assert to_remember(HTTP, Attempt("sse"), legacy) == "sse"
    assert to_remember(HTTP, Attempt(MODERN, remembered=True), modern) is None  # already known
    assert to_remember(STDIO, Attempt(None), legacy) is None
