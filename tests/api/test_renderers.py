"""Both renderers on a scripted sequence of run events, against the OpenAI SDK's own types
(no server): the JSON body and the stream say the same thing."""

from __future__ import annotations

import json
from typing import Any

import mcp_types as types
import pytest
from openai._models import construct_type
from openai.types.chat import ChatCompletion, ChatCompletionChunk
from openai.types.responses import Response

from app.api.chat.render import ChatRenderer
from app.api.responses.render import ResponseRenderer
from app.engine.events import (
    McpCallFinished,
    McpCallStarted,
    RunEvent,
    RunFinished,
    TextDelta,
    TokenTotals,
    ToolsListed,
    TurnStarted,
    TurnUsage,
)
from app.errors import ServerUnreachable
from app.mcp.features.notes import Sampled

EVENTS: list[RunEvent] = [
    ToolsListed(server_label="docs", tools=(types.Tool(name="search", input_schema={}),)),
    TurnStarted(index=0),
    McpCallStarted(call_id="c1", server_label="docs", tool="search", arguments="{}"),
    McpCallFinished(
        call_id="c1",
        server_label="docs",
        tool="search",
        arguments="{}",
        output="3 hits",
        error=None,
        duration_s=0.01,
        notes=(Sampled(model="m", prompt_tokens=1, completion_tokens=2, cost_usd=0.5),),
    ),
    TurnUsage(model="m", prompt_tokens=10, completion_tokens=2),
    TurnStarted(index=1),
    TextDelta(text="Found "),
    TextDelta(text="3."),
    TurnUsage(model="m", prompt_tokens=20, completion_tokens=3),
    # The loop adds its turns' usage up on the last event.
    RunFinished(
        reason="budget_exceeded",
        detail="cut short",
        usage=TokenTotals(prompt_tokens=30, completion_tokens=5),
    ),
]


def sse_data(pieces: list[str]) -> list[dict[str, object]]:
    lines = [line for piece in pieces for line in piece.splitlines()]
    return [json.loads(line[6:]) for line in lines if line.startswith("data: {")]


def test_chat_body_and_chunks_agree() -> None:
    body_renderer, stream_renderer = ChatRenderer(model="m"), ChatRenderer(model="m", stream=True)
    pieces = stream_renderer.opening()
    for event in EVENTS:
        assert body_renderer.absorb(event) == []  # nothing is formatted when not streaming
        pieces += stream_renderer.absorb(event)
    pieces += stream_renderer.closing()
    completion = ChatCompletion.model_validate(body_renderer.body())
    assert completion.choices[0].message.content == "Found 3."
    assert completion.choices[0].finish_reason == "length"
    assert completion.usage is not None and completion.usage.prompt_tokens == 30
    extension = body_renderer.body()["toolbridge"]
    assert extension["incomplete_details"] == {"reason": "budget_exceeded", "message": "cut short"}
    assert extension["mcp_calls"][0]["notes"][0]["kind"] == "sampling"
    chunks = [ChatCompletionChunk.model_validate(c) for c in sse_data(pieces)]
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == "Found 3." and pieces[-1] == "data: [DONE]\n\n"


def test_responses_body_and_stream_agree() -> None:
    body_renderer = ResponseRenderer(fields={"model": "m"})
    stream_renderer = ResponseRenderer(fields={"model": "m"}, stream=True)
    pieces = stream_renderer.opening()
    for event in EVENTS:
        body_renderer.absorb(event)
        pieces += stream_renderer.absorb(event)
    pieces += stream_renderer.closing()
    body = body_renderer.body()
    assert body["incomplete_details"] == {"reason": "budget_exceeded"}  # toolbridge's reason
    # What a client holds: the SDK parses a response leniently (openai._models.construct_type,
    # private API, is what its client calls), so toolbridge's reason outside the SDK's literal
    # reaches the caller as sent (see docs/getting-started.md, "OpenAI SDK versions").
    received = construct_type(type_=Response, value=body)
    assert isinstance(received, Response) and received.incomplete_details is not None
    assert received.incomplete_details.reason == "budget_exceeded"
    # Everything else validates strictly (the route adds these request echoes; the reason is
    # the one documented difference).
    body.update(parallel_tool_calls=True, tool_choice="auto", tools=[])
    strict = {**body, "incomplete_details": {"reason": "max_output_tokens"}}
    response = Response.model_validate(strict)
    assert [item.type for item in response.output] == ["mcp_list_tools", "mcp_call", "message"]
    assert response.output[1].id == "mcp_c1" and response.output[1].output == "3 hits"
    assert response.status == "incomplete"
    assert response.usage is not None and response.usage.output_tokens == 5
    events = sse_data(pieces)
    sequence = [e["sequence_number"] for e in events]
    assert sequence == list(range(len(events)))
    assert events[-1]["type"] == "response.incomplete"
    final = events[-1]["response"]
    assert isinstance(final, dict) and final["output"] == stream_renderer.body()["output"]


def test_a_failure_after_the_stream_started_is_told_in_the_stream() -> None:
    chat = ChatRenderer(model="m", stream=True)
    chat_error = sse_data([chat.failed(ServerUnreachable("docs", "timed out"))])[0]
    assert chat_error["error"]["code"] == "external_connector_error"  # type: ignore[index]
    responses = ResponseRenderer(fields={"model": "m"}, stream=True)
    responses.opening()
    events = sse_data([responses.failed(ServerUnreachable("docs", "timed out"))])
    kinds = [e["type"] for e in events]
    assert kinds[-1] == "response.failed" and "response.mcp_list_tools.failed" in kinds


@pytest.mark.parametrize("include_usage", [False, True])
@pytest.mark.parametrize("model", ["m", 'a "quoted" \\ model é', "bad \ud800 name"])
def test_a_delta_chunk_is_the_whole_chunk_rendered(include_usage: bool, model: str) -> None:
    """``delta_chunk`` encodes only the delta into bytes made once; the text is what rendering
    the whole chunk gives, for text, tool calls, what orjson refuses, and a model name orjson
    refuses (then every chunk is rendered whole)."""
    renderer = ChatRenderer(model=model, stream=True, include_usage=include_usage)
    deltas: list[dict[str, Any]] = [
        {"content": 'héllo \U0001f600 "q" \n'},
        {"content": ""},
        {"tool_calls": [{"index": 0, "id": "c1", "function": {"name": "f", "arguments": "{"}}]},
        {"content": "lone \ud800 surrogate"},  # orjson refuses it: the stdlib's text
        {"content": 2**70},  # past orjson's integers
    ]
    for delta in deltas:
        assert renderer.delta_chunk(delta) == renderer.chunk(delta)


def test_a_response_message_holds_its_text_so_far_and_each_message_its_own() -> None:
    """The open message's tokens are joined when read (``ResponseRenderer._sync_text``): a
    snapshot mid-message has the text so far, a failure keeps it, and a later message starts
    empty."""
    renderer = ResponseRenderer(fields={"model": "m"}, stream=True)
    for text in ("one", " two"):
        renderer.absorb(TextDelta(text=text))
    assert renderer.response()["output"][0]["content"][0]["text"] == "one two"
    renderer.absorb(TextDelta(text=" three"))
    renderer.absorb(TurnStarted(index=1))
    renderer.absorb(TextDelta(text="next"))
    events = sse_data([renderer.failed(RuntimeError("boom"))])
    done = [e["text"] for e in events if e["type"] == "response.output_text.done"]
    assert done == ["next"]
    texts = [item["content"][0]["text"] for item in renderer.response()["output"]]
    assert texts == ["one two three", "next"]
