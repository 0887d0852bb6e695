"""A corpus of bad input: every item gets exactly the 400 OpenAI would answer, in its envelope,
naming the field at fault (``param``), never a 5xx and never another 4xx."""

from __future__ import annotations

import json
from typing import Any

import httpx
import pytest
from pydantic import TypeAdapter, ValidationError

from app.api.chat.request import ChatCompletionRequest, ChatMessage
from tests.conftest import TEST_KEY
from tests.fixtures.servers import ServerThread

DEEP = b"[" * 5000 + b"]" * 5000  # deeper than any parser's recursion limit

OK_MESSAGES = [{"role": "user", "content": "hi"}]
ASKED_CALL = {"id": "call_asked", "type": "function", "function": {"name": "f", "arguments": "{}"}}
# (name, body, the param the error names): None where no single field is at fault.
CORPUS: list[tuple[str, bytes, str | None]] = [
    ("empty body", b"", None),
    ("not json", b"hello", None),
    ("truncated", b'{"model": "scripted-a", "messages": [{"role": "us', None),
    ("json array", b"[1, 2, 3]", None),
    ("json null", b"null", None),
    ("json string", b'"model"', None),
    ("invalid utf-8", b'{"model": "\xff\xfe", "messages": []}', None),
    (
        "lone surrogate",
        b'{"model": "scripted-a", "messages": [{"role": "user", "content": "\\ud800"}]}',
        None,
    ),
    (
        "nan",
        b'{"model": "scripted-a", "temperature": NaN, "input": "hi", "messages": '
        b'[{"role": "user", "content": "hi"}]}',
        "temperature",
    ),
    ("deep nesting", b'{"model": "scripted-a", "messages": ' + DEEP + b"}", None),
]
FIELDS: list[tuple[str, dict[str, Any]]] = [
    ("model is a number", {"model": 42, "messages": OK_MESSAGES}),
    ("messages is a string", {"model": "scripted-a", "messages": "hi"}),
    (
        "content part type a list",  # found by schemathesis: a 500 (an unhashable type)
        {"model": "scripted-a", "messages": [{"role": "user", "content": [{"type": ["text"]}]}]},
    ),
    ("huge temperature", {"model": "scripted-a", "messages": OK_MESSAGES, "temperature": 1e308}),
    ("negative max_tokens", {"model": "scripted-a", "messages": OK_MESSAGES, "max_tokens": -5}),
    ("huge max_tokens", {"model": "scripted-a", "messages": OK_MESSAGES, "max_tokens": 10**40}),
    ("tools not a list", {"model": "scripted-a", "messages": OK_MESSAGES, "tools": {"a": 1}}),
    (
        "unknown tool type",
        {"model": "scripted-a", "messages": OK_MESSAGES, "tools": [{"type": "teleport"}]},
    ),
    (
        "mcp without label",
        {
            "model": "scripted-a",
            "messages": OK_MESSAGES,
            "tools": [{"type": "mcp", "server_url": "https://x.example/mcp"}],
        },
    ),
    (
        "server_url not a url",
        {
            "model": "scripted-a",
            "messages": OK_MESSAGES,
            "tools": [{"type": "mcp", "server_label": "a", "server_url": "\u202e\u0000://"}],
        },
    ),
    (
        "headers not strings",
        {
            "model": "scripted-a",
            "messages": OK_MESSAGES,
            "tools": [
                {
                    "type": "mcp",
                    "server_label": "a",
                    "server_url": "https://x.example/mcp",
                    "headers": {"a": ["b"]},
                }
            ],
        },
    ),
    ("stream not bool", {"model": "scripted-a", "messages": OK_MESSAGES, "stream": "yes"}),
    ("n is 2", {"model": "scripted-a", "messages": OK_MESSAGES, "n": 2}),
    (
        "tool message without id",
        {"model": "scripted-a", "messages": [{"role": "tool", "content": "x"}]},
    ),
    (
        "mcp_limits max_turns zero",
        {"model": "scripted-a", "messages": OK_MESSAGES, "mcp_limits": {"max_turns": 0}},
    ),
    (
        "tool message answering no call",  # was sent on to the model
        {
            "model": "scripted-a",
            "messages": [
                {"role": "user", "content": "hi"},
                {"role": "assistant", "tool_calls": [ASKED_CALL]},
                {"role": "tool", "tool_call_id": "call_asked", "content": "42"},
                {"role": "tool", "tool_call_id": "call_never_made", "content": "42"},
            ],
        },
    ),
    (
        "tool call never answered",  # was sent on to the model, which OpenAI refuses
        {
            "model": "scripted-a",
            "messages": [
                {"role": "user", "content": "hi"},
                {"role": "assistant", "tool_calls": [ASKED_CALL, {**ASKED_CALL, "id": "call_2"}]},
                {"role": "tool", "tool_call_id": "call_asked", "content": "42"},
                {"role": "user", "content": "and then?"},
            ],
        },
    ),
    (
        "last message a tool call",
        {
            "model": "scripted-a",
            "messages": [
                {"role": "user", "content": "hi"},
                {"role": "assistant", "tool_calls": [ASKED_CALL]},
            ],
        },
    ),
]
# The field each case above names in its 400 (``param``): pydantic's union branches
# (``tools[0].mcp...``, ``input.str``) never leak into it.
PARAMS = {
    "model is a number": "model",
    "messages is a string": "messages",
    "content part type a list": "messages[0]",
    "huge temperature": "temperature",
    "negative max_tokens": "max_tokens",
    "huge max_tokens": "max_tokens",
    "tools not a list": "tools",
    "unknown tool type": "tools[0]",
    "mcp without label": "tools[0].server_label",
    "server_url not a url": "tools[0].server_url",
    "headers not strings": "tools[0].headers.a",
    "stream not bool": "stream",
    "n is 2": "n",
    "tool message without id": "messages[0]",
    "mcp_limits max_turns zero": "mcp_limits.max_turns",
    "tool message answering no call": "messages[3].tool_call_id",
    "tool call never answered": "messages[1].tool_calls",
    "last message a tool call": "messages[1].tool_calls",
    "output answering no call": "input[2]",
    "call without output": "input[1]",
    # Responses
    "input is a number": "input",
    "item without content": "input[0].content",
    "unknown approval": "input[0].approval_request_id",
    "bad image part": "input[0].content[0]",
    "metadata too big": "metadata",
    "background without store": "store",
    "bad tool_choice": "tool_choice",
    "approval filter wrong": "tools[0].require_approval",
}
RESPONSES: list[tuple[str, dict[str, Any]]] = [
    ("input is a number", {"model": "scripted-a", "input": 7}),
    (
        "item without content",
        {"model": "scripted-a", "input": [{"type": "message", "role": "user"}]},
    ),
    (
        "unknown approval",
        {
            "model": "scripted-a",
            "input": [
                {"type": "mcp_approval_response", "approval_request_id": "mcpr_x", "approve": True}
            ],
        },
    ),
    (
        "bad image part",
        {
            "model": "scripted-a",
            "input": [{"role": "user", "content": [{"type": "input_image", "file_id": "file_1"}]}],
        },
    ),
    (
        "metadata too big",
        {"model": "scripted-a", "input": "x", "metadata": {str(i): "v" for i in range(17)}},
    ),
    (
        "background without store",
        {"model": "scripted-a", "input": "x", "background": True, "store": False},
    ),
    ("bad tool_choice", {"model": "scripted-a", "input": "x", "tool_choice": {"type": "?"}}),
    (
        "call without output",  # was sent on to the model
        {
            "model": "scripted-a",
            "input": [
                {"type": "function_call", "call_id": "call_asked", "name": "f", "arguments": "{}"},
                {"type": "function_call", "call_id": "call_left", "name": "f", "arguments": "{}"},
                {"type": "function_call_output", "call_id": "call_asked", "output": "42"},
                {"role": "user", "content": "and now?"},
            ],
        },
    ),
    (
        "output answering no call",  # was sent on to the model
        {
            "model": "scripted-a",
            "input": [
                {"type": "function_call", "call_id": "call_asked", "name": "f", "arguments": "{}"},
                {"type": "function_call_output", "call_id": "call_asked", "output": "42"},
                {"type": "function_call_output", "call_id": "call_never_made", "output": "42"},
            ],
        },
    ),
    (
        "approval filter wrong",
        {
            "model": "scripted-a",
            "input": "x",
            "tools": [
                {"type": "mcp", "server_label": "calc", "require_approval": {"sometimes": {}}}
            ],
        },
    ),
]


def send(toolbridge: ServerThread, path: str, content: bytes) -> httpx.Response:
    return httpx.post(
        f"{toolbridge.url}{path}",
        content=content,
        timeout=30,
        headers={"Authorization": f"Bearer {TEST_KEY}", "Content-Type": "application/json"},
    )


def assert_bad_request(response: httpx.Response, param: str | None) -> None:
    assert response.status_code == 400, response.text
    error = response.json()["error"]
    assert set(error) == {"message", "type", "param", "code"}
    assert error["type"] == "invalid_request_error" and error["param"] == param, error
    assert error["message"] and "Traceback" not in response.text


@pytest.mark.parametrize("path", ["/v1/chat/completions", "/v1/responses"])
@pytest.mark.parametrize(("name", "content", "param"), CORPUS, ids=[c[0] for c in CORPUS])
def test_malformed_bodies(
    toolbridge: ServerThread, path: str, name: str, content: bytes, param: str | None
) -> None:
    assert_bad_request(send(toolbridge, path, content), param)


@pytest.mark.parametrize(("name", "body"), FIELDS, ids=[f[0] for f in FIELDS])
def test_bad_chat_fields(toolbridge: ServerThread, name: str, body: dict[str, Any]) -> None:
    response = send(toolbridge, "/v1/chat/completions", json.dumps(body).encode())
    assert_bad_request(response, PARAMS[name])


def test_an_unanswered_tool_call_is_named_as_openai_names_it(toolbridge: ServerThread) -> None:
    body = dict(FIELDS)["tool call never answered"]
    response = send(toolbridge, "/v1/chat/completions", json.dumps(body).encode())
    assert response.json()["error"]["message"] == (
        "An assistant message with 'tool_calls' must be followed by tool messages responding "
        "to each 'tool_call_id'. The following tool_call_ids did not have response messages: "
        "call_2"
    )


@pytest.mark.parametrize(("name", "body"), RESPONSES, ids=[r[0] for r in RESPONSES])
def test_bad_responses_fields(toolbridge: ServerThread, name: str, body: dict[str, Any]) -> None:
    assert_bad_request(send(toolbridge, "/v1/responses", json.dumps(body).encode()), PARAMS[name])


def test_unknown_harmless_fields_are_ignored(toolbridge: ServerThread) -> None:
    body = {
        "model": "scripted-a",
        "messages": OK_MESSAGES,
        "x_custom": {"a": 1},
        "service_tier": "auto",
    }
    assert send(toolbridge, "/v1/chat/completions", json.dumps(body).encode()).status_code == 200


@pytest.mark.parametrize(
    "messages",
    [
        [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "hi"}],
        [{"role": "user", "content": "hi", "name": "ann"}, {"role": "assistant", "content": "ok"}],
        [{"role": "developer", "content": ""}, {"role": "user", "content": "é \U0001f600"}],
    ],
)
def test_plain_histories_validate_as_each_message_would(messages: list[dict[str, Any]]) -> None:
    """A history of plain text messages is taken as sent, without validating each message
    (``_messages``): what comes out is what validating each one gives."""
    taken = ChatCompletionRequest.model_validate({"model": "m", "messages": messages}).messages
    each = TypeAdapter(list[ChatMessage]).validate_python(messages)
    assert taken == each == messages
    with_null = [*messages, {"role": "user", "content": "x", "name": None}]
    taken = ChatCompletionRequest.model_validate({"model": "m", "messages": with_null}).messages
    assert taken[-1] == {"role": "user", "content": "x"}  # not plain: validated, null dropped


@pytest.mark.parametrize(
    "odd",
    [
        {"role": "tool", "content": "42"},  # two keys, but a role that needs a tool call id
        {"role": "user", "content": 7},  # two keys, content not text
        {"role": "user", "text": "hi"},  # two keys, not the plain ones
    ],
)
def test_a_two_key_message_that_is_not_plain_is_validated(odd: dict[str, Any]) -> None:
    """The inline check for role-and-content messages (``_all_plain``) takes none of these:
    each is validated, and refused as validating it alone refuses it."""
    with pytest.raises(ValidationError):
        TypeAdapter(list[ChatMessage]).validate_python([odd])
    messages = [{"role": "user", "content": "hi"}, odd]
    with pytest.raises(ValidationError):
        ChatCompletionRequest.model_validate({"model": "m", "messages": messages})
