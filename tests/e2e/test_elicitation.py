"""Elicitation: declined cleanly in both eras, logged, and visible to the caller."""

from __future__ import annotations

import logging

import openai
import pytest

from tests.conftest import mcp_tool
from tests.fixtures.mcp_servers import RunningMcpServer


def run_tool(client: openai.OpenAI, server: RunningMcpServer, script: str) -> dict:
    completion = client.chat.completions.create(
        model="scripted-a",
        tools=[mcp_tool(server)],  # type: ignore[list-item]
        messages=[{"role": "user", "content": script}],
    )
    return completion.model_extra["toolbridge"]["mcp_calls"][0]


@pytest.mark.parametrize("kind", ["modern", "legacy"])
def test_form_elicitation_is_declined_and_noted(
    client: openai.OpenAI,
    mcp_servers: dict[str, RunningMcpServer],
    kind: str,
    caplog: pytest.LogCaptureFixture,
) -> None:
    with caplog.at_level(logging.WARNING, logger="app.mcp.features.callbacks"):
        call = run_tool(client, mcp_servers[kind], "call calc__greet {}")
    assert call["output"] == "elicitation decline"
    assert call["notes"] == [
        {"kind": "elicitation_declined", "mode": "form", "message": "What is your name?"}
    ]
    warning = next(r for r in caplog.records if "asked for user input" in r.getMessage())
    assert "server=calc" in warning.getMessage() and "mode=form" in warning.getMessage()
    assert "What is your name" not in warning.getMessage()  # never the contents


def test_url_elicitation_is_declined_with_the_url(
    client: openai.OpenAI, mcp_servers: dict[str, RunningMcpServer]
) -> None:
    call = run_tool(client, mcp_servers["legacy"], "call calc__connect_account {}")
    assert call["output"] == "url elicitation decline"
    assert call["notes"] == [
        {
            "kind": "elicitation_declined",
            "mode": "url",
            "message": "Sign in to continue",
            "url": "https://auth.example/sign-in",
        }
    ]


def test_url_elicitation_required_error_is_reported(
    client: openai.OpenAI, mcp_servers: dict[str, RunningMcpServer]
) -> None:
    call = run_tool(client, mcp_servers["legacy"], "call calc__needs_browser {}")
    assert call["error"]["type"] == "mcp_protocol_error" and call["error"]["code"] == -32042
    assert call["notes"][0]["url"] == "https://auth.example/authorize"


def test_responses_mcp_call_carries_the_note(
    client: openai.OpenAI, mcp_server: RunningMcpServer
) -> None:
    response = client.responses.create(
        model="scripted-a",
        input="call calc__greet {}",
        tools=[mcp_tool(mcp_server, require_approval="never")],
    )
    call = response.output[1]
    assert call.type == "mcp_call"
    assert call.model_extra["notes"][0]["kind"] == "elicitation_declined"
