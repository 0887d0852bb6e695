"""``POST /v1/responses/input_tokens`` (``client.responses.input_tokens.count``): the tokens
the first model call of a request would send, its MCP servers' tool definitions included."""

from __future__ import annotations

from typing import Any

import anyio
import openai
import pytest

from app.budget.tokens import counted_tokens
from tests.conftest import mcp_tool
from tests.fixtures.mcp_servers import RunningMcpServer
from tests.fixtures.servers import ServerThread


def _first_call_count(calls: list[dict[str, Any]], before: int) -> int:
    """What the count of the call the model really received is."""
    first = calls[before]
    return anyio.run(counted_tokens, "scripted-a", first["messages"], first.get("tools") or [])


def test_the_count_is_of_the_call_the_model_receives_mcp_tools_included(
    client: openai.OpenAI, mcp_server: RunningMcpServer, scripted_model: ServerThread
) -> None:
    calls = scripted_model.server.config.app.state.calls
    tools: Any = [mcp_tool(mcp_server, require_approval="never")]
    asked = {"model": "scripted-a", "input": "say counted", "instructions": "Be brief."}
    asked["tools"] = tools
    count = client.responses.input_tokens.count(**asked)
    assert count.object == "response.input_tokens"
    plain = client.responses.input_tokens.count(model="scripted-a", input="say counted")
    one_tool = client.responses.input_tokens.count(
        **{**asked, "tools": [mcp_tool(mcp_server, allowed_tools=["echo"])]}
    )
    assert plain.input_tokens < one_tool.input_tokens < count.input_tokens
    before = len(calls)
    first = client.responses.create(**asked)
    assert _first_call_count(calls, before) == count.input_tokens
    # A continuation counts its history, as the run restores it.
    asked_next = {"model": "scripted-a", "input": "say again", "previous_response_id": first.id}
    follow_count = client.responses.input_tokens.count(**asked_next)
    before = len(calls)
    client.responses.create(**asked_next)
    assert _first_call_count(calls, before) == follow_count.input_tokens


def test_counting_runs_and_keeps_nothing(
    client: openai.OpenAI, scripted_model: ServerThread
) -> None:
    calls = scripted_model.server.config.app.state.calls
    before = len(calls)
    words = client.responses.input_tokens.count(
        model="scripted-a", input=" ".join(["hello"] * 1000)
    )
    fewer = client.responses.input_tokens.count(input="hello")  # the model may be left out
    assert len(calls) == before  # the model was not called
    # cl100k_base: " hello" is one token each (the scripted model is not one tiktoken knows).
    assert words.input_tokens - fewer.input_tokens == 999
    conversation = client.conversations.create(items=[{"role": "user", "content": "hi " * 50}])
    in_it = client.responses.input_tokens.count(
        model="scripted-a", input="hello", conversation=conversation.id
    )
    assert in_it.input_tokens >= fewer.input_tokens + 50
    # The conversation was not held: a response on it runs at once.
    client.responses.create(model="scripted-a", input="say free", conversation=conversation.id)


def test_bad_counts_are_refused_as_a_create_would_be(client: openai.OpenAI) -> None:
    with pytest.raises(openai.NotFoundError) as missing:
        client.responses.input_tokens.count(model="no-such-model", input="x")
    assert missing.value.param == "model"
    with pytest.raises(openai.BadRequestError) as both:
        client.responses.input_tokens.count(
            model="scripted-a", input="x", previous_response_id="resp_1", conversation="conv_1"
        )
    assert both.value.param == "conversation"
