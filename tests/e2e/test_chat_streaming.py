"""``stream: true``: chunk SSE ending in [DONE], usage on request, keep-alives while tools run."""

from __future__ import annotations

import json
from typing import Any

import httpx
import openai
import pytest

from tests.conftest import TEST_KEY, mcp_tool
from tests.fixtures.mcp_servers import RunningMcpServer
from tests.fixtures.servers import ServerThread

WEATHER = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}},
    },
}


def sse_lines(toolbridge: ServerThread, path: str, body: dict[str, Any]) -> list[str]:
    """The SSE lines exactly as sent (blank lines dropped), for a streamed request."""
    with httpx.stream(
        "POST",
        f"{toolbridge.url}{path}",
        json=body,
        timeout=60,
        headers={"Authorization": f"Bearer {TEST_KEY}"},
    ) as response:
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/event-stream")
        return [line for line in response.iter_lines() if line]


def raw_stream(toolbridge: ServerThread, server: RunningMcpServer, script: str) -> list[str]:
    """The SSE lines exactly as sent, for a streamed chat run with ``server``'s tools."""
    body = {
        "model": "scripted-a",
        "stream": True,
        "tools": [mcp_tool(server)],
        "messages": [{"role": "user", "content": script}],
    }
    return sse_lines(toolbridge, "/v1/chat/completions", body)


def test_final_text_streams_in_pieces_after_mcp_turns(
    client: openai.OpenAI, mcp_server: RunningMcpServer
) -> None:
    stream = client.chat.completions.create(
        model="scripted-a",
        stream=True,
        tools=[mcp_tool(mcp_server)],  # type: ignore[list-item]
        messages=[{"role": "user", "content": 'call calc__add {"a": 1, "b": 2}'}],
    )
    chunks = list(stream)
    assert all(c.object == "chat.completion.chunk" for c in chunks)
    assert chunks[0].choices[0].delta.role == "assistant"
    pieces = [
        c.choices[0].delta.content for c in chunks if c.choices and c.choices[0].delta.content
    ]
    assert len(pieces) > 1  # streamed, not sent as one block
    assert "".join(pieces) == "done: calc__add=3"
    # No tool-call deltas for the MCP turn: a client would try to run them.
    assert not any(c.choices and c.choices[0].delta.tool_calls for c in chunks)
    last = chunks[-1]
    assert last.choices[0].finish_reason == "stop"
    assert last.model_extra["toolbridge"]["mcp_calls"][0]["output"] == "3"


def test_include_usage_adds_a_final_usage_chunk(client: openai.OpenAI) -> None:
    chunks = list(
        client.chat.completions.create(
            model="scripted-a",
            stream=True,
            stream_options={"include_usage": True},
            messages=[{"role": "user", "content": "say four words right here"}],
        )
    )
    assert chunks[-1].choices == []
    assert chunks[-1].usage is not None
    assert chunks[-1].usage.completion_tokens == 4
    assert all(c.usage is None for c in chunks[:-1])


def test_stream_ends_with_done_and_keeps_alive_while_tools_run(
    toolbridge: ServerThread, mcp_server: RunningMcpServer
) -> None:
    lines = raw_stream(toolbridge, mcp_server, 'call calc__slow {"seconds": 1.0}')
    assert lines[-1] == "data: [DONE]"
    assert lines.count(": keep-alive") >= 2  # keepalive_s is 0.3 in tests
    payloads = [json.loads(line[6:]) for line in lines if line.startswith("data: {")]
    assert (
        "".join(p["choices"][0]["delta"].get("content") or "" for p in payloads if p["choices"])
        == "done: calc__slow=slept 1.0"
    )


def test_client_tool_calls_stream_as_tool_call_deltas(
    client: openai.OpenAI, mcp_server: RunningMcpServer
) -> None:
    chunks = list(
        client.chat.completions.create(
            model="scripted-a",
            stream=True,
            tools=[mcp_tool(mcp_server), WEATHER],  # type: ignore[arg-type]
            messages=[
                {
                    "role": "user",
                    "content": ('call calc__echo {"text": "a"}\ncall get_weather {"city": "Lima"}'),
                }
            ],
        )
    )
    deltas = [d for c in chunks if c.choices for d in (c.choices[0].delta.tool_calls or [])]
    assert deltas[0].index == 0
    assert deltas[0].function.name == "get_weather"
    assert {d.index for d in deltas} == {0}
    assert json.loads("".join(d.function.arguments or "" for d in deltas)) == {"city": "Lima"}
    assert chunks[-1].choices[0].finish_reason == "tool_calls"


def test_dead_server_fails_the_stream_before_it_starts(client: openai.OpenAI) -> None:
    with pytest.raises(openai.APIStatusError) as caught:
        client.chat.completions.create(
            model="scripted-a",
            stream=True,
            messages=[{"role": "user", "content": "hi"}],
            tools=[
                {
                    "type": "mcp",
                    "server_label": "gone",  # type: ignore[list-item]
                    "server_url": "http://127.0.0.1:9/mcp",
                }
            ],
        )
    assert caught.value.status_code == 424


def test_model_failure_after_start_is_an_error_event(
    toolbridge: ServerThread, mcp_server: RunningMcpServer
) -> None:
    lines = raw_stream(toolbridge, mcp_server, 'call calc__echo {"text": "x"}\nfail 500 later')
    error = json.loads(lines[-2][6:])
    assert error["error"]["type"] == "server_error"
    assert "scripted failure" in error["error"]["message"]
    assert lines[-1] == "data: [DONE]"


def test_model_failure_before_anything_streamed_is_an_http_error(
    toolbridge: ServerThread, mcp_server: RunningMcpServer
) -> None:
    """Listing tools sends nothing: a first model call that fails is the request's status."""
    body = {
        "model": "scripted-a",
        "stream": True,
        "messages": [{"role": "user", "content": "fail 500"}],
        "tools": [mcp_tool(mcp_server)],
    }
    response = httpx.post(
        f"{toolbridge.url}/v1/chat/completions",
        json=body,
        timeout=60,
        headers={"Authorization": f"Bearer {TEST_KEY}"},
    )
    assert response.status_code == 502
    assert "scripted failure" in response.json()["error"]["message"]


@pytest.mark.parametrize("kind", ["modern", "legacy"])
def test_progress_reaches_a_streaming_client_as_comments_and_the_call_notes(
    toolbridge: ServerThread, mcp_servers: dict[str, RunningMcpServer], kind: str
) -> None:
    """A progress token goes with every call; SDKs ignore the comment lines."""
    lines = raw_stream(toolbridge, mcp_servers[kind], 'call calc__progress_steps {"steps": 3}')
    comments, chunks, answered_at = [], [], None
    for line in lines:
        if line.startswith(": progress"):
            comments.append(line)
        elif line.startswith("data: {"):
            chunks.append(json.loads(line[6:]))
            if answered_at is None and any(
                choice["delta"].get("content") for choice in chunks[-1]["choices"]
            ):
                answered_at = len(comments)  # the model's answer, after the call's result
    assert comments and comments[-1].endswith("3/3 step 3"), comments
    assert answered_at == len(comments)  # every progress line came before the answer
    extension = next(c["toolbridge"] for c in chunks if "toolbridge" in c)
    (call,) = extension["mcp_calls"]
    assert call["output"] == "3 steps"
    assert call["notes"][-1] == {"kind": "progress", "progress": 3, "total": 3, "message": "step 3"}


def test_progress_lines_in_responses_streams_and_through_the_openai_sdk(
    toolbridge: ServerThread, client: openai.OpenAI, mcp_server: RunningMcpServer
) -> None:
    """Responses streams carry the progress lines too, before the call completes; the SDK's
    stream parsers skip them: both endpoints' streams read as they do without progress, the
    answer whole."""
    script = 'call calc__progress_steps {"steps": 3}'
    tool = mcp_tool(mcp_server, require_approval="never")
    body = {"model": "scripted-a", "stream": True, "input": script, "tools": [tool]}
    lines = sse_lines(toolbridge, "/v1/responses", body)
    progress = [i for i, line in enumerate(lines) if line.startswith(": progress")]
    completed = lines.index("event: response.mcp_call.completed")
    assert progress and progress[-1] < completed and lines[progress[-1]].endswith("3/3 step 3")
    chat = client.chat.completions.create(
        model="scripted-a",
        stream=True,
        messages=[{"role": "user", "content": script}],
        tools=[mcp_tool(mcp_server)],  # type: ignore[list-item]
    )
    text = "".join(c.choices[0].delta.content or "" for c in chat if c.choices)
    assert text == "done: calc__progress_steps=3 steps"
    events = list(
        client.responses.create(
            model="scripted-a",
            stream=True,
            input=script,
            tools=[tool],  # type: ignore[list-item]
        )
    )
    assert events[-1].type == "response.completed"
    assert events[-1].response.output_text == "done: calc__progress_steps=3 steps"
    calls = [e.item for e in events if e.type == "response.output_item.done"]
    assert [item.type for item in calls if item.type == "mcp_call"] == ["mcp_call"]
