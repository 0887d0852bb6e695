"""The demo MCP server (also a handy target for tests and benchmarks)."""

from __future__ import annotations

from datetime import UTC, datetime

from mcp.server.caching import CacheHint
from mcp.server.mcpserver import MCPServer
from mcp.types import ToolAnnotations


def build_demo_server() -> MCPServer:
    server = MCPServer(
        "toolbridge-demo",
        instructions="Demo tools served by toolbridge.",
        cache_hints={"tools/list": CacheHint(ttl_ms=60_000, scope="public")},
    )

    @server.tool(annotations=ToolAnnotations(read_only_hint=True))
    def add(a: float, b: float) -> float:
        """Add two numbers."""
        return a + b

    @server.tool(annotations=ToolAnnotations(read_only_hint=True))
    def echo(text: str) -> str:
        """Return the text unchanged."""
        return text

    @server.tool(annotations=ToolAnnotations(read_only_hint=True))
    def utc_time() -> str:
        """The current time in UTC, ISO 8601."""
        return datetime.now(UTC).isoformat(timespec="seconds")

    return server
