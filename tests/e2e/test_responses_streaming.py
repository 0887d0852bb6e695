"""Streamed Responses: OpenAI's event sequence, as the SDK's typed events and stream helper."""

from __future__ import annotations

import json
from typing import Any

import httpx
import openai
from openai.types.responses import ResponseStreamEvent
from pydantic import TypeAdapter

from tests.conftest import TEST_KEY, mcp_tool
from tests.fixtures.mcp_servers import RunningMcpServer
from tests.fixtures.servers import ServerThread

EVENTS: TypeAdapter[Any] = TypeAdapter(ResponseStreamEvent)


def raw_events(toolbridge: ServerThread, body: dict[str, Any]) -> list[tuple[str, Any]]:
    """(event name, typed SDK event) for every SSE event, keep-alives skipped."""
    events = []
    with httpx.stream(
        "POST",
        f"{toolbridge.url}/v1/responses",
        json={**body, "stream": True},
        headers={"Authorization": f"Bearer {TEST_KEY}"},
        timeout=30,
    ) as response:
        assert response.status_code == 200
        name = None
        for line in response.iter_lines():
            if line.startswith("event: "):
                name = line[7:]
            elif line.startswith("data: "):
                payload = json.loads(line[6:])
                assert payload["type"] == name
                events.append((name, EVENTS.validate_python(payload)))
    return events


def test_every_event_is_typed_numbered_and_in_order(
    toolbridge: ServerThread, mcp_server: RunningMcpServer
) -> None:
    events = raw_events(
        toolbridge,
        {
            "model": "scripted-a",
            "input": 'call calc__add {"a": 1, "b": 2}',
            "tools": [mcp_tool(mcp_server, require_approval="never")],
        },
    )
    names = [name for name, _ in events]
    assert [e.sequence_number for _, e in events] == list(range(len(events)))
    assert names == [
        "response.created",
        "response.in_progress",
        "response.output_item.added",
        "response.mcp_list_tools.in_progress",
        "response.mcp_list_tools.completed",
        "response.output_item.done",
        "response.output_item.added",
        "response.mcp_call.in_progress",
        "response.mcp_call_arguments.delta",
        "response.mcp_call_arguments.done",
        "response.mcp_call.completed",
        "response.output_item.done",
        "response.output_item.added",
        "response.content_part.added",
        *["response.output_text.delta"] * (len(names) - 18),
        "response.output_text.done",
        "response.content_part.done",
        "response.output_item.done",
        "response.completed",
    ]
    assert names.count("response.output_text.delta") > 1  # text streams in pieces
    added = [e.output_index for n, e in events if n == "response.output_item.added"]
    assert added == [0, 1, 2]  # each item added once
    final = events[-1][1].response
    assert final.status == "completed" and final.output_text == "done: calc__add=3"


def test_sdk_stream_helper_runs_to_the_final_response(
    client: openai.OpenAI, mcp_server: RunningMcpServer
) -> None:
    with client.responses.stream(
        model="scripted-a",
        input='call calc__echo {"text": "hey"}',
        tools=[mcp_tool(mcp_server, require_approval="never")],
    ) as stream:
        deltas = [e.delta for e in stream if e.type == "response.output_text.delta"]
        final = stream.get_final_response()
    assert "".join(deltas) == final.output_text == "done: calc__echo=hey"
    stored = client.responses.retrieve(final.id)
    assert [i.type for i in stored.output] == ["mcp_list_tools", "mcp_call", "message"]


def test_streamed_approval_and_function_call(
    client: openai.OpenAI, mcp_server: RunningMcpServer
) -> None:
    weather = {
        "type": "function",
        "name": "get_weather",
        "parameters": {"type": "object", "properties": {}},
    }
    with client.responses.stream(
        model="scripted-a",
        tools=[mcp_tool(mcp_server), weather],  # type: ignore[list-item]
        input='call calc__add {"a": 1, "b": 1}\ncall get_weather {}',
    ) as stream:
        names = [e.type for e in stream]
        final = stream.get_final_response()
    assert "response.function_call_arguments.done" in names
    assert [i.type for i in final.output] == [
        "mcp_list_tools",
        "function_call",
        "mcp_approval_request",
    ]


def test_dead_server_fails_in_stream(toolbridge: ServerThread) -> None:
    events = raw_events(
        toolbridge,
        {
            "model": "scripted-a",
            "input": "hi",
            "tools": [
                {"type": "mcp", "server_label": "gone", "server_url": "http://127.0.0.1:9/mcp"}
            ],
        },
    )
    names = [name for name, _ in events]
    assert names == [
        "response.created",
        "response.in_progress",
        "response.output_item.added",
        "response.mcp_list_tools.in_progress",
        "response.mcp_list_tools.failed",
        "response.output_item.done",
        "response.failed",
    ]
    failed = events[-1][1].response
    assert failed.status == "failed"
    assert "Error retrieving tool list from MCP server: 'gone'" in failed.error.message
    assert failed.output[0].error.startswith("could not connect")
