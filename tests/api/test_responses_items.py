"""Folding Responses items into the conversation the engine runs (no server, no Redis)."""

from __future__ import annotations

import pytest

from app.api.responses import ids
from app.api.responses.items import fold
from app.engine.events import ToolCall
from app.errors import InvalidRequest


def test_messages_calls_and_outputs_become_chat_messages() -> None:
    items = [
        {"type": "message", "role": "user", "content": [{"type": "input_text", "text": "hi"}]},
        {"type": "function_call", "call_id": "c1", "name": "lookup", "arguments": "{}"},
        {"type": "function_call_output", "call_id": "c1", "output": "found"},
        {
            "type": "mcp_call",
            "id": ids.mcp_call_id("c2"),
            "server_label": "docs",
            "name": "search",
            "arguments": '{"q": "x"}',
            "output": "3 hits",
        },
        {
            "type": "mcp_call",
            "id": ids.mcp_call_id("c3"),
            "server_label": "docs",
            "name": "search",
            "arguments": "{}",
            "error": "boom",
        },
    ]
    conversation = fold([], items, instructions="be brief")
    roles = [m["role"] for m in conversation.messages]
    assert roles == ["system", "user", "assistant", "tool", "assistant", "tool", "tool"]
    assert conversation.messages[2]["tool_calls"][0]["id"] == "c1"
    mcp_turn = conversation.messages[4]["tool_calls"]
    assert [c["id"] for c in mcp_turn] == ["c2", "c3"]  # consecutive calls: one turn
    assert mcp_turn[0]["function"]["name"] == "docs__search"
    assert conversation.messages[5]["content"] == "3 hits"
    assert conversation.messages[6]["content"] == "[tool error] boom"


def test_an_approval_answer_becomes_a_decision_on_a_typed_call() -> None:
    request = {
        "type": "mcp_approval_request",
        "id": ids.approval_request_id("c9"),
        "server_label": "docs",
        "name": "delete",
        "arguments": '{"id": 1}',
    }
    history = [{"type": "message", "role": "user", "content": "go"}, request]
    answer = {
        "type": "mcp_approval_response",
        "approval_request_id": request["id"],
        "approve": False,
        "reason": "no",
    }
    conversation = fold(history, [answer], instructions=None)
    (decision,) = conversation.approvals
    assert decision.call == ToolCall("c9", "docs__delete", '{"id": 1}')
    assert not decision.approve and decision.reason == "no"
    assert conversation.approvals_at == len(conversation.messages)


def test_an_unanswered_approval_request_is_reported_to_the_model_as_denied() -> None:
    request = {
        "type": "mcp_approval_request",
        "id": ids.approval_request_id("c5"),
        "server_label": "docs",
        "name": "delete",
        "arguments": "{}",
    }
    conversation = fold([request], [{"role": "user", "content": "never mind"}], instructions=None)
    tool_message = conversation.messages[1]
    assert tool_message["role"] == "tool" and "did not approve" in tool_message["content"]
    assert conversation.approvals == []


def test_listed_tools_are_remembered_and_bad_items_are_refused() -> None:
    listing = {
        "type": "mcp_list_tools",
        "server_label": "docs",
        "tools": [{"name": "search", "input_schema": {"type": "object"}}],
    }
    conversation = fold([], [listing, {"role": "user", "content": "x"}], instructions=None)
    assert [t.name for t in conversation.known_tools["docs"]] == ["search"]
    with pytest.raises(InvalidRequest) as caught:
        fold([], [{"type": "telepathy"}], instructions=None)
    assert caught.value.param == "input[0]"


def test_call_ids_are_read_back_from_item_ids() -> None:
    for make in (ids.mcp_call_id, ids.approval_request_id, ids.function_call_id):
        assert ids.call_id_of(make("call_abc")) == "call_abc"
    assert ids.call_id_of("someone_elses") == "someone_elses"


@pytest.mark.parametrize("role", ["user", "assistant"])
def test_content_parts_read_the_same_with_or_without_a_part_that_is_not_text(role: str) -> None:
    """Text-only content is read without a part each; with an image among it, part by part:
    either way each part's text is what it says (a refusal's too), in order."""
    text_parts = [
        {"type": "input_text", "text": "a"},
        {"type": "output_text", "text": "b", "annotations": [], "logprobs": []},
        {"type": "refusal", "refusal": "c"},
        {"type": "text", "text": 7},
        {"type": "output_text"},
    ]
    image = {"type": "input_image", "image_url": "https://example.com/i.png"}
    for content in (text_parts, [*text_parts, image], []):
        [message] = fold([], [{"role": role, "content": content}], instructions=None).messages
        texts = "abc7" if content else ""
        if role == "user" and image in content:
            assert [p.get("text") for p in message["content"]] == ["a", "b", "c", "7", "", None]
        else:
            assert message == {"role": role, "content": texts}
    for bad in ({"type": ["input_text"]}, "text", {"type": "input_file"}):
        with pytest.raises(InvalidRequest, match="Unsupported content part"):
            fold(
                [],
                [{"role": role, "content": [{"type": "input_text", "text": "x"}, bad]}],
                instructions=None,
            )
