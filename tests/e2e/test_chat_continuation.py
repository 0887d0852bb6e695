"""Client function tools next to MCP tools, and the standard OpenAI continuation."""

from __future__ import annotations

import json
from typing import Any

import openai

from tests.conftest import mcp_tool
from tests.fixtures.mcp_servers import RunningMcpServer
from tests.fixtures.servers import ServerThread

WEATHER = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Weather for a city",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}},
    },
}


def test_mixed_turn_runs_mcp_calls_and_returns_only_client_calls_then_continues(
    client: openai.OpenAI, scripted_model: ServerThread, mcp_server: RunningMcpServer
) -> None:
    messages: list[dict[str, Any]] = [
        {
            "role": "user",
            "content": ('call calc__add {"a": 20, "b": 22}\ncall get_weather {"city": "Oslo"}'),
        }
    ]
    tools = [mcp_tool(mcp_server), WEATHER]
    first = client.chat.completions.create(model="scripted-a", messages=messages, tools=tools)  # type: ignore[arg-type]
    choice = first.choices[0]
    assert choice.finish_reason == "tool_calls"
    assert [c.function.name for c in choice.message.tool_calls] == ["get_weather"]
    assert json.loads(choice.message.tool_calls[0].function.arguments) == {"city": "Oslo"}
    assert first.model_extra["toolbridge"]["mcp_calls"][0]["output"] == "42"

    # The client continues the standard way: its assistant message and its own tool result.
    messages.append(choice.message.model_dump(exclude_none=True))
    messages.append(
        {"role": "tool", "tool_call_id": choice.message.tool_calls[0].id, "content": "sunny"}
    )
    calls = scripted_model.server.config.app.state.calls
    before = len(calls)
    second = client.chat.completions.create(model="scripted-a", messages=messages, tools=tools)  # type: ignore[arg-type]
    # The model saw the MCP call and its result that the client never saw.
    assert second.choices[0].message.content == ("done: calc__add=42; get_weather=sunny")
    seen = calls[before]["messages"]
    assert [m["role"] for m in seen] == ["user", "assistant", "tool", "tool"]
    assert [c["function"]["name"] for c in seen[1]["tool_calls"]] == ["calc__add", "get_weather"]
    assert mcp_server.log.methods["tools/call"] == 1  # not run again


def test_hidden_turns_belong_to_the_key_that_made_them(
    toolbridge: ServerThread, client: openai.OpenAI, mcp_server: RunningMcpServer
) -> None:
    messages: list[dict[str, Any]] = [
        {
            "role": "user",
            "content": (
                'call calc__echo {"text": "secret-ish"}\ncall get_weather {"city": "Oslo"}'
            ),
        }
    ]
    first = client.chat.completions.create(
        model="scripted-a", messages=messages, tools=[mcp_tool(mcp_server), WEATHER]
    )  # type: ignore[arg-type]
    message = first.choices[0].message
    messages += [
        message.model_dump(exclude_none=True),
        {"role": "tool", "tool_call_id": message.tool_calls[0].id, "content": "rain"},
    ]
    other = openai.OpenAI(base_url=f"{toolbridge.url}/v1", api_key="sk-test-limited", max_retries=0)
    second = other.chat.completions.create(model="scripted-b", messages=messages)  # type: ignore[arg-type]
    # Another key continuing the same conversation gets nothing spliced in.
    assert second.choices[0].message.content == "done: get_weather=rain"


def test_client_only_tool_calls_pass_through_untouched(client: openai.OpenAI) -> None:
    completion = client.chat.completions.create(
        model="scripted-a",
        messages=[{"role": "user", "content": 'call get_weather {"city": "Rome"}'}],
        tools=[WEATHER],
    )  # type: ignore[list-item]
    choice = completion.choices[0]
    assert choice.finish_reason == "tool_calls"
    assert choice.message.tool_calls[0].function.arguments == '{"city": "Rome"}'
    assert completion.model_extra["toolbridge"]["mcp_calls"] == []
