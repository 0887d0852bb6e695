"""The demo MCP server over stdio, for the benchmark's registered stdio server."""

from __future__ import annotations

import logging

from app.demo.mcp_server import build_demo_server

if __name__ == "__main__":
    logging.disable(logging.INFO)
    build_demo_server().run("stdio")
