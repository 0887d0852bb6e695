"""Today's OpenAI SDK (3.57) cannot tell toolbridge from OpenAI: a client on it, in a process
of its own (see ``tests/sdk3/check.py``); every other test's client is the 2.x SDK, so clients
on the previous major still parse everything too."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from tests.conftest import TEST_KEY
from tests.fixtures.mcp_servers import RunningMcpServer
from tests.fixtures.servers import ServerThread

REPO = Path(__file__).resolve().parents[2]
SDK3 = REPO / ".venv" / "openai3"


def test_openai_sdk_3_parses_every_item_and_event_strictly(
    toolbridge: ServerThread, mcp_server: RunningMcpServer, big_server: str
) -> None:
    env = {**os.environ, "PYTHONPATH": f"{SDK3}{os.pathsep}{REPO}"}
    done = subprocess.run(
        [sys.executable, "-m", "tests.sdk3.check", toolbridge.url, TEST_KEY, mcp_server.url]
        + [big_server],
        env=env,
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    summary = json.loads(done.stdout.strip().splitlines()[-1])
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
