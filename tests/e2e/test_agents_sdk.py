"""The OpenAI Agents SDK, unchanged, against toolbridge: an agent with an MCP tool runs twice in
one ``OpenAIConversationsSession`` (the Conversations API), and the second run sees the first.
The SDK runs in a venv of its own (``tests/agents/session_check.py``)."""

from __future__ import annotations

import json

from tests.conftest import TEST_KEY
from tests.fixtures.clients import REPO, run_check
from tests.fixtures.mcp_servers import RunningMcpServer
from tests.fixtures.prerequisites import require
from tests.fixtures.servers import ServerThread

AGENTS_PYTHON = REPO / ".venv" / "agents" / "bin" / "python"


def test_an_agent_session_keeps_both_runs_in_one_conversation(
    toolbridge: ServerThread, mcp_server: RunningMcpServer, scripted_model: ServerThread
) -> None:
    require(AGENTS_PYTHON.exists(), "the Agents SDK venv (.venv/agents, made by make install)")
    calls = scripted_model.server.config.app.state.calls
    before = len(calls)
    args = [toolbridge.url, TEST_KEY, mcp_server.url]
    summary = run_check(AGENTS_PYTHON, "tests.agents.session_check", args, path=str(REPO))
    assert summary["openai"] == "3.57.0"
    assert summary["conversation"].startswith("conv_")
    assert summary["first"] == "done: calc__add=42" and summary["second"] == "seen"
    # Both runs' items are in the conversation, the MCP ones included.
    assert summary["items"] == [
        "message", "mcp_list_tools", "mcp_call", "message", "message", "message"
    ]  # fmt: skip
    assert summary["popped"] == "message" and summary["after_pop"] == 5
    # The second run's model call read the first run: its tool result and its answer.
    second = json.dumps(calls[-1]["messages"])
    assert len(calls) - before == 3  # two calls for the first run, one for the second
    assert "done: calc__add=42" in second and "42" in second
