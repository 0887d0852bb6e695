"""A corpus of bad input: every item gets a 4xx in OpenAI's envelope, never a 5xx."""

from __future__ import annotations

import json
from typing import Any

import httpx
import pytest

from tests.conftest import TEST_KEY
from tests.fixtures.servers import ServerThread

DEEP = b"[" * 5000 + b"]" * 5000  # deeper than any parser's recursion limit

OK_MESSAGES = [{"role": "user", "content": "hi"}]
CORPUS: list[tuple[str, bytes]] = [
    ("empty body", b""),
    ("not json", b"hello"),
    ("truncated", b'{"model": "scripted-a", "messages": [{"role": "us'),
    ("json array", b"[1, 2, 3]"),
    ("json null", b"null"),
    ("json string", b'"model"'),
    ("invalid utf-8", b'{"model": "\xff\xfe", "messages": []}'),
    (
        "lone surrogate",
        b'{"model": "scripted-a", "messages": [{"role": "user", "content": "\\ud800"}]}',
    ),
    ("nan", b'{"model": "scripted-a", "temperature": NaN, "messages": []}'),
    ("deep nesting", b'{"model": "scripted-a", "messages": ' + DEEP + b"}"),
]
FIELDS: list[tuple[str, dict[str, Any]]] = [
    ("model is a number", {"model": 42, "messages": OK_MESSAGES}),
    ("messages is a string", {"model": "scripted-a", "messages": "hi"}),
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
        "mcp_limits unknown key",
        {"model": "scripted-a", "messages": OK_MESSAGES, "mcp_limits": {"max_turns": 0}},
    ),
]
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
    ("background", {"model": "scripted-a", "input": "x", "background": True}),
    ("bad tool_choice", {"model": "scripted-a", "input": "x", "tool_choice": {"type": "?"}}),
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


def assert_client_error(response: httpx.Response) -> None:
    assert 400 <= response.status_code < 500, response.text
    error = response.json()["error"]
    assert set(error) == {"message", "type", "param", "code"}
    assert "Traceback" not in response.text


@pytest.mark.parametrize("path", ["/v1/chat/completions", "/v1/responses"])
@pytest.mark.parametrize(("name", "content"), CORPUS, ids=[c[0] for c in CORPUS])
def test_malformed_bodies(toolbridge: ServerThread, path: str, name: str, content: bytes) -> None:
    assert_client_error(send(toolbridge, path, content))


@pytest.mark.parametrize(("name", "body"), FIELDS, ids=[f[0] for f in FIELDS])
def test_bad_chat_fields(toolbridge: ServerThread, name: str, body: dict[str, Any]) -> None:
    assert_client_error(send(toolbridge, "/v1/chat/completions", json.dumps(body).encode()))


@pytest.mark.parametrize(("name", "body"), RESPONSES, ids=[r[0] for r in RESPONSES])
def test_bad_responses_fields(toolbridge: ServerThread, name: str, body: dict[str, Any]) -> None:
    assert_client_error(send(toolbridge, "/v1/responses", json.dumps(body).encode()))


def test_unknown_harmless_fields_are_ignored(toolbridge: ServerThread) -> None:
    body = {
        "model": "scripted-a",
        "messages": OK_MESSAGES,
        "x_custom": {"a": 1},
        "service_tier": "auto",
    }
    assert send(toolbridge, "/v1/chat/completions", json.dumps(body).encode()).status_code == 200
