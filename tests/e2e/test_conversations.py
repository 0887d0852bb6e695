"""The Conversations API with the official OpenAI SDK, and responses that read and extend a
conversation (``conversation=``), MCP items included."""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import openai
import pytest

from tests.conftest import LIMITED_KEY, TEST_KEY, mcp_tool
from tests.fixtures.mcp_servers import RunningMcpServer
from tests.fixtures.servers import ServerThread
from tests.fixtures.waiting import wait_until


def texts(items: Any) -> list[str]:
    return [
        part.text
        for item in items
        if item.type == "message"
        for part in item.content
        if hasattr(part, "text")
    ]


def test_a_conversation_is_created_read_updated_and_deleted(
    client: openai.OpenAI, toolbridge: ServerThread
) -> None:
    conversation = client.conversations.create(
        items=[{"role": "user", "content": "hello"}], metadata={"topic": "demo"}
    )
    assert conversation.id.startswith("conv_") and conversation.metadata == {"topic": "demo"}
    assert client.conversations.retrieve(conversation.id).created_at == conversation.created_at
    updated = client.conversations.update(conversation.id, metadata={"topic": "changed"})
    assert updated.metadata == {"topic": "changed"}
    added = client.conversations.items.create(
        conversation.id,
        items=[{"role": "user", "content": f"m{i}"} for i in range(3)],
    )
    assert texts(added.data) == ["m0", "m1", "m2"] and added.first_id == added.data[0].id
    newest = client.conversations.items.list(conversation.id, limit=2)
    assert texts(newest.data) == ["m2", "m1"] and newest.has_more
    oldest = client.conversations.items.list(conversation.id, order="asc", after=newest.data[0].id)
    assert texts(oldest.data) == []  # nothing after the newest, oldest first
    every = client.conversations.items.list(conversation.id, order="asc").data
    assert texts(every) == ["hello", "m0", "m1", "m2"]
    one = client.conversations.items.retrieve(added.data[1].id, conversation_id=conversation.id)
    assert texts([one]) == ["m1"]
    after_delete = client.conversations.items.delete(
        added.data[1].id, conversation_id=conversation.id
    )
    assert after_delete.id == conversation.id
    assert texts(client.conversations.items.list(conversation.id, order="asc").data) == [
        "hello",
        "m0",
        "m2",
    ]
    other = openai.OpenAI(base_url=f"{toolbridge.url}/v1", api_key=LIMITED_KEY, max_retries=0)
    with pytest.raises(openai.NotFoundError):
        other.conversations.retrieve(conversation.id)  # another key's is as good as missing
    deleted = client.conversations.delete(conversation.id)
    assert deleted.deleted and deleted.object == "conversation.deleted"
    with pytest.raises(openai.NotFoundError):
        client.conversations.retrieve(conversation.id)


def test_responses_read_and_extend_their_conversation(
    client: openai.OpenAI, scripted_model: ServerThread, mcp_server: RunningMcpServer
) -> None:
    conversation = client.conversations.create(items=[{"role": "user", "content": "say first"}])
    calls = scripted_model.server.config.app.state.calls
    first = client.responses.create(
        model="scripted-a",
        conversation=conversation.id,
        input='call calc__add {"a": 2, "b": 3}',
        tools=[mcp_tool(mcp_server, require_approval="never")],  # type: ignore[list-item]
    )
    assert first.conversation is not None and first.conversation.id == conversation.id
    assert first.output_text == "done: calc__add=5"
    before = len(calls)
    second = client.responses.create(
        model="scripted-a", conversation={"id": conversation.id}, input="say second"
    )
    assert second.output_text == "second"
    seen = [m.get("content") for m in calls[before]["messages"]]
    assert any("say first" in str(c) for c in seen) and any("calc__add=5" in str(c) for c in seen)
    items = client.conversations.items.list(conversation.id, order="asc", limit=100).data
    kinds = [item.type for item in items]
    assert kinds == [
        "message",  # the conversation's first item
        "message",  # the first response's input
        "mcp_list_tools",
        "mcp_call",
        "message",  # its answer
        "message",  # the second response's input
        "message",  # its answer
    ]
    call = items[3]
    assert call.type == "mcp_call" and call.output == "5" and call.server_label == "calc"


def test_conversation_and_previous_response_id_together_are_a_400(client: openai.OpenAI) -> None:
    conversation = client.conversations.create()
    earlier = client.responses.create(model="scripted-a", input="say x")
    with pytest.raises(openai.BadRequestError) as caught:
        client.responses.create(
            model="scripted-a",
            input="say y",
            conversation=conversation.id,
            previous_response_id=earlier.id,
        )
    assert caught.value.param == "conversation"
    assert client.conversations.items.list(conversation.id).data == []  # nothing was added


def test_a_second_response_on_a_busy_conversation_is_a_409(
    client: openai.OpenAI, scripted_model: ServerThread
) -> None:
    """Racing responses never interleave items: the second is refused while the first runs."""
    conversation = client.conversations.create()
    calls = scripted_model.server.config.app.state.calls
    before = len(calls)
    with ThreadPoolExecutor(1) as pool:
        slow = pool.submit(
            client.responses.create,
            model="scripted-a",
            conversation=conversation.id,
            input="sleep 2\nsay slow",
        )
        # Its model call has begun, so it holds the conversation (taken before the call).
        wait_until(lambda: len(calls) > before, what="the first response's model call")
        with pytest.raises(openai.ConflictError) as caught:
            client.responses.create(
                model="scripted-a", conversation=conversation.id, input="say fast"
            )
        assert caught.value.code == "conversation_locked"
        assert slow.result().output_text == "slow"
    after = client.responses.create(
        model="scripted-a", conversation=conversation.id, input="say next"
    )
    assert after.output_text == "next"
    items = client.conversations.items.list(conversation.id, order="asc").data
    assert texts(items) == ["sleep 2\nsay slow", "slow", "say next", "next"]


def test_items_a_response_could_not_read_are_refused(client: openai.OpenAI) -> None:
    """Refused naming the request's ``items`` (the Conversations API's field, not ``input``)."""
    with pytest.raises(openai.BadRequestError) as no_content:
        client.conversations.create(items=[{"type": "message", "role": "user"}])
    assert no_content.value.param == "items[0].content"
    conversation = client.conversations.create(items=[{"role": "user", "content": "hi"}])
    with pytest.raises(openai.BadRequestError) as unanswerable:
        client.conversations.items.create(
            conversation.id,
            items=[
                {"type": "message", "role": "user", "content": "fine"},
                {"type": "mcp_approval_response", "approval_request_id": "mcpr_x", "approve": True},
            ],
        )
    assert unanswerable.value.param == "items[1].approval_request_id"


def test_a_function_call_waits_for_its_output_in_a_conversation_not_in_a_response(
    client: openai.OpenAI,
) -> None:
    """A conversation takes a call before its output (a client storing a turn's items as they
    come adds them in two requests); a response reading it while the call has no output is
    refused, as at OpenAI."""
    call = {"type": "function_call", "call_id": "call_w", "name": "weather", "arguments": "{}"}
    conversation = client.conversations.create(items=[{"role": "user", "content": "weather?"}])
    client.conversations.items.create(conversation.id, items=[call])
    with pytest.raises(openai.BadRequestError) as unanswered:
        client.responses.create(model="scripted-a", input="and?", conversation=conversation.id)
    assert unanswered.value.param == "conversation.items[1]"
    assert "No tool output found for function call call_w" in str(unanswered.value)
    client.conversations.items.create(
        conversation.id,
        items=[{"type": "function_call_output", "call_id": "call_w", "output": "sunny"}],
    )
    answer = client.responses.create(
        model="scripted-a", input="say x", conversation=conversation.id
    )
    assert answer.status == "completed"


def test_a_response_that_would_overfill_its_conversation_is_refused_before_it_runs(
    toolbridge_factory: Callable[..., ServerThread], scripted_model: ServerThread
) -> None:
    """Refused before its model call (nothing spent), not after it ran and could not add."""
    server = toolbridge_factory(conversation_max_items=4)
    client = openai.OpenAI(base_url=f"{server.url}/v1", api_key=TEST_KEY, max_retries=0)
    conversation = client.conversations.create(
        items=[{"role": "user", "content": f"m{i}"} for i in range(3)]
    )
    calls = scripted_model.server.config.app.state.calls
    before = len(calls)
    with pytest.raises(openai.BadRequestError) as caught:
        client.responses.create(model="scripted-a", input="say x", conversation=conversation.id)
    assert caught.value.param == "conversation" and "at most 4 items" in str(caught.value)
    assert len(calls) == before  # the model was not called
    one = client.conversations.create(items=[{"role": "user", "content": "m0"}])
    answered = client.responses.create(model="scripted-a", input="say y", conversation=one.id)
    assert answered.output_text == "y"  # input and answer fit: 3 of 4
