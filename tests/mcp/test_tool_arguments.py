"""Checking the model's arguments against a tool's input schema, without ever fetching a URL."""

from __future__ import annotations

import socket
import threading
from typing import Any

import mcp_types as types

from app.mcp.tools import Arguments, BadArguments, BoundTool


def bound(schema: dict[str, Any]) -> BoundTool:
    # parse_arguments needs only the tool; the session is not used.
    return BoundTool("t", None, types.Tool(name="t", input_schema=schema))  # type: ignore[arg-type]


def test_a_network_ref_in_a_schema_is_never_fetched() -> None:
    listener = socket.create_server(("127.0.0.1", 0))
    connections: list[object] = []

    def record() -> None:
        try:
            conn, peer = listener.accept()
        except OSError:  # closed at the end of the test: nothing connected
            return
        connections.append(peer)
        conn.close()  # a fetch fails at once rather than hanging the test

    threading.Thread(target=record, daemon=True).start()
    port = listener.getsockname()[1]
    schema = {
        "type": "object",
        "properties": {
            "profile": {"$ref": f"http://127.0.0.1:{port}/profile.json"},
            "n": {"type": "integer"},
        },
    }
    try:
        parsed = bound(schema).parse_arguments('{"profile": {"a": 1}, "n": 2}', max_bytes=1000)
        wrong = bound(schema).parse_arguments('{"n": "two"}', max_bytes=1000)
    finally:
        listener.close()
    assert isinstance(parsed, Arguments)  # the unresolvable part is left to the server
    assert isinstance(wrong, BadArguments) and "at n" in wrong.reason  # the rest is checked
    assert connections == []


def test_a_local_ref_is_followed() -> None:
    schema = {
        "type": "object",
        "$defs": {"count": {"type": "integer"}},
        "properties": {"n": {"$ref": "#/$defs/count"}},
    }
    assert isinstance(bound(schema).parse_arguments('{"n": 3}', max_bytes=100), Arguments)
    assert isinstance(bound(schema).parse_arguments('{"n": "x"}', max_bytes=100), BadArguments)
