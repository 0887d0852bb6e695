"""The tool loop over real HTTP: OpenAI SDK -> toolbridge -> scripted model + real MCP servers."""

from __future__ import annotations

import json

import openai
import pytest

from tests.conftest import mcp_tool
from tests.fixtures.mcp_servers import KINDS, RunningMcpServer


@pytest.mark.parametrize("kind", KINDS)
def test_model_calls_mcp_tool_and_answers_with_its_result(
    client: openai.OpenAI, mcp_servers: dict[str, RunningMcpServer], kind: str
) -> None:
    server = mcp_servers[kind]
    completion = client.chat.completions.create(
        model="scripted-a",
        messages=[{"role": "user", "content": 'call calc__add {"a": 2, "b": 40}'}],
        tools=[mcp_tool(server)],  # type: ignore[list-item]
    )
    choice = completion.choices[0]
    assert choice.message.content == "done: calc__add=42"
    assert choice.finish_reason == "stop"
    calls = completion.model_extra["toolbridge"]["mcp_calls"]
    assert [(c["server_label"], c["name"], json.loads(c["arguments"])) for c in calls] == [
        ("calc", "add", {"a": 2, "b": 40})
    ]
    assert calls[0]["output"] == "42"
    assert calls[0]["error"] is None
    assert calls[0]["duration_ms"] >= 0
