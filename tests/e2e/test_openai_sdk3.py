"""Today's OpenAI SDK (3.57) cannot tell toolbridge from OpenAI: a client on it, in a process
of its own (see ``tests/sdk3/check.py``); every other test's client is the 2.x SDK, so clients
on the previous major still parse everything too."""

from __future__ import annotations

import os
import sys

from tests.conftest import TEST_KEY
from tests.fixtures.clients import REPO, run_check
from tests.fixtures.mcp_servers import RunningMcpServer
from tests.fixtures.servers import ServerThread

SDK3 = REPO / ".venv" / "openai3"


def test_openai_sdk_3_parses_every_item_and_event_strictly(
    toolbridge: ServerThread, mcp_server: RunningMcpServer, big_server: str
) -> None:
    args = [toolbridge.url, TEST_KEY, mcp_server.url, big_server]
    path = f"{SDK3}{os.pathsep}{REPO}"
    summary = run_check(sys.executable, "tests.sdk3.check", args, path=path)
    assert summary["sdk"] == "3.57.0"
    assert summary["search_items"] == [
        "McpListTools",
        "ResponseToolSearchCall",
        "ResponseToolSearchOutputItem",
        "McpCall",
        "ResponseOutputMessage",
    ]
    assert summary["errors"] == ["McpToolExecutionError", "McpProtocolError"]
    assert summary["stream_events"] > 5 and summary["stream_helper_events"] > 5
    assert summary["chat"] == "done: calc__add=4"
    assert summary["outliving"] == {
        "conversation_items": ["message", "message", "mcp_list_tools", "mcp_call", "message"],
        "queued": "queued",
        "background_text": "later",
        "sequence": True,
        "last_event": "response.completed",
        "cancelled": "cancelled",
        "input_tokens": ["InputTokenCountResponse", True],
    }
