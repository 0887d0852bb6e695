"""MCP tool behaviour in the chat loop: servers, naming, concurrency, failures, limits."""

from __future__ import annotations

import json
import sys
import uuid
from typing import Any

import openai
import pytest

from tests.conftest import TEST_KEY, mcp_tool
from tests.fixtures.mcp_servers import RunningMcpServer
from tests.fixtures.servers import ServerThread


def ask(client: openai.OpenAI, script: str, tools: list[dict[str, Any]], **kwargs: Any) -> Any:
    return client.chat.completions.create(
        model="scripted-a", messages=[{"role": "user", "content": script}], tools=tools, **kwargs
    )  # type: ignore[arg-type]


def calls_of(completion: Any) -> list[dict[str, Any]]:
    return list(completion.model_extra["toolbridge"]["mcp_calls"])


def test_registered_server_is_used_by_label_alone(
    client: openai.OpenAI, mcp_server: RunningMcpServer
) -> None:
    completion = ask(
        client, 'call calc__echo {"text": "hi"}', [{"type": "mcp", "server_label": "calc"}]
    )
    assert completion.choices[0].message.content == "done: calc__echo=hi"
    assert mcp_server.log.methods["tools/call"] == 1


def test_registered_stdio_server_runs_as_a_child_process(client: openai.OpenAI) -> None:
    completion = ask(
        client,
        'call stdio_calc__add {"a": 1, "b": 1}',
        [{"type": "mcp", "server_label": "stdio_calc"}],
    )
    assert completion.choices[0].message.content == "done: stdio_calc__add=2"


def test_model_sees_prefixed_sanitised_names_and_calls_map_back(
    client: openai.OpenAI, scripted_model: ServerThread, mcp_server: RunningMcpServer
) -> None:
    before = len(scripted_model.server.config.app.state.calls)
    completion = ask(
        client, 'call calc__files_read-v2 {"path": "/etc/motd"}', [mcp_tool(mcp_server)]
    )
    first_request = scripted_model.server.config.app.state.calls[before]
    offered = {t["function"]["name"] for t in first_request["tools"]}
    assert {"calc__add", "calc__files_read-v2", "calc__whoami"} <= offered
    assert calls_of(completion)[0]["name"] == "files.read-v2"
    assert "contents of /etc/motd" in completion.choices[0].message.content


def test_a_text_history_reaches_the_model_as_sent_on_every_call(
    client: openai.OpenAI, scripted_model: ServerThread, mcp_server: RunningMcpServer
) -> None:
    """A history of text messages is taken as sent and encoded once for the whole run: each
    model call still gets it exactly, the run's own turns after it."""
    history: list[dict[str, Any]] = [
        {"role": "system", "content": 'Be brief. «ünïcödé» \u2028 "quoted" \\ back'},
        {"role": "user", "content": "earlier", "name": "ann"},
        {"role": "assistant", "content": "an earlier answer"},
        {"role": "developer", "content": ""},
        {"role": "user", "content": 'call calc__echo {"text": "hi"}'},
    ]
    calls = scripted_model.server.config.app.state.calls
    before = len(calls)
    completion = client.chat.completions.create(
        model="scripted-a",
        messages=history,  # type: ignore[arg-type]
        tools=[mcp_tool(mcp_server)],  # type: ignore[list-item]
    )
    assert completion.choices[0].message.content == "done: calc__echo=hi"
    first, second = calls[before:]
    assert first["messages"] == history
    assert second["messages"][: len(history)] == history
    call, result = second["messages"][len(history) :]
    assert call["tool_calls"][0]["function"]["name"] == "calc__echo"
    assert result == {"role": "tool", "tool_call_id": call["tool_calls"][0]["id"], "content": "hi"}


def test_allowed_tools_limits_what_the_model_is_offered(
    client: openai.OpenAI, scripted_model: ServerThread, mcp_server: RunningMcpServer
) -> None:
    calls = scripted_model.server.config.app.state.calls
    before = len(calls)
    completion = ask(
        client, 'call calc__add {"a": 1, "b": 2}', [mcp_tool(mcp_server, allowed_tools=["echo"])]
    )
    assert [t["function"]["name"] for t in calls[before]["tools"]] == ["calc__echo"]
    # The model called a tool it was not offered: it is told so, and nothing reaches the server.
    assert calls_of(completion)[0]["error"] == {
        "type": "mcp_protocol_error",
        "code": -32602,
        "message": "There is no tool named 'calc__add'.",
    }
    assert mcp_server.log.methods["tools/call"] == 0


def test_allowed_tools_filter_form(
    client: openai.OpenAI, scripted_model: ServerThread, mcp_server: RunningMcpServer
) -> None:
    calls = scripted_model.server.config.app.state.calls
    before = len(calls)
    ask(client, "say hi", [mcp_tool(mcp_server, allowed_tools={"tool_names": ["add", "big"]})])
    assert sorted(t["function"]["name"] for t in calls[before]["tools"]) == [
        "calc__add",
        "calc__big",
    ]


def test_parallel_calls_run_concurrently_and_return_in_model_order(
    client: openai.OpenAI, mcp_server: RunningMcpServer
) -> None:
    # Each barrier call returns only once all three are in flight at the server at once.
    barrier = f'call calc__barrier {{"name": "{uuid.uuid4().hex}", "parties": 3}}'
    script = "\n".join([barrier] * 3 + ['call calc__echo {"text": "last"}'])
    completion = ask(client, script, [mcp_tool(mcp_server)])
    calls = calls_of(completion)
    assert [c["name"] for c in calls] == ["barrier", "barrier", "barrier", "echo"]
    assert all(c["error"] is None for c in calls), calls
    assert completion.choices[0].message.content.endswith("calc__echo=last")


def test_tool_error_reaches_model_and_caller_and_loop_goes_on(
    client: openai.OpenAI, mcp_server: RunningMcpServer
) -> None:
    completion = ask(client, 'call calc__fail {"message": "disk on fire"}', [mcp_tool(mcp_server)])
    call = calls_of(completion)[0]
    assert call["output"] is None
    assert call["error"]["type"] == "mcp_tool_execution_error"
    assert "disk on fire" in call["error"]["content"][0]["text"]
    content = completion.choices[0].message.content
    assert content.startswith("done: calc__fail=[tool error] ")
    assert "disk on fire" in content
    assert completion.choices[0].finish_reason == "stop"


def test_invalid_arguments_go_back_to_the_model_not_the_server(
    client: openai.OpenAI, mcp_server: RunningMcpServer
) -> None:
    completion = ask(client, 'call calc__add ["not", "an", "object"]', [mcp_tool(mcp_server)])
    assert calls_of(completion)[0]["error"]["message"] == "The arguments must be a JSON object."
    assert mcp_server.log.methods["tools/call"] == 0


def test_headers_and_authorization_reach_their_server(
    client: openai.OpenAI, mcp_server: RunningMcpServer
) -> None:
    completion = ask(
        client,
        "call calc__whoami {}",
        [mcp_tool(mcp_server, headers={"X-Test-Token": "tok-123"}, authorization="bearer-xyz")],
    )
    assert completion.choices[0].message.content == "done: calc__whoami=tok-123"
    assert mcp_server.log.headers[-1]["authorization"] == "Bearer bearer-xyz"


def test_usage_sums_every_model_turn(client: openai.OpenAI, mcp_server: RunningMcpServer) -> None:
    single = ask(client, "say one turn", [])
    looped = ask(client, 'call calc__echo {"text": "a"}', [mcp_tool(mcp_server)])
    assert single.usage.total_tokens > 0
    # Two model calls: the first (tool call) and the answer; both are counted.
    assert looped.usage.completion_tokens >= 1 + len(["done:", "calc__echo=a"])
    assert looped.usage.prompt_tokens > 2 * len(["call", "calc__echo", '{"text":', '"a"}']) - 1
    assert looped.usage.total_tokens == looped.usage.prompt_tokens + looped.usage.completion_tokens


def test_turn_limit_ends_the_run_with_a_stated_reason(
    client: openai.OpenAI, mcp_server: RunningMcpServer
) -> None:
    completion = ask(
        client,
        'always call calc__echo {"text": "again"}',
        [mcp_tool(mcp_server)],
        extra_body={"mcp_limits": {"max_turns": 3}},
    )
    assert completion.choices[0].finish_reason == "length"
    details = completion.model_extra["toolbridge"]["incomplete_details"]
    assert details["reason"] == "max_turns"
    assert "3 model turns" in details["message"]
    statuses = [call["status"] for call in calls_of(completion)]
    assert statuses == ["completed", "completed", "incomplete"]  # the third turn's did not run


def test_tool_call_limit_ends_the_run(client: openai.OpenAI, mcp_server: RunningMcpServer) -> None:
    script = "\n".join(['call calc__echo {"text": "x"}'] * 3)
    completion = ask(
        client, script, [mcp_tool(mcp_server)], extra_body={"mcp_limits": {"max_tool_calls": 2}}
    )
    details = completion.model_extra["toolbridge"]["incomplete_details"]
    assert details["reason"] == "max_tool_calls"
    assert completion.choices[0].finish_reason == "length"
    assert mcp_server.log.methods["tools/call"] == 0


def test_tool_timeout_becomes_an_error_result(
    client: openai.OpenAI, mcp_server: RunningMcpServer
) -> None:
    completion = ask(
        client,
        'call calc__slow {"seconds": 5}',
        [mcp_tool(mcp_server)],
        extra_body={"mcp_limits": {"tool_timeout_s": 0.3}},
    )
    assert calls_of(completion)[0]["error"] == {
        "type": "mcp_protocol_error",
        "code": -32001,
        "message": "Tool call timed out after 0.3s",
    }
    assert completion.choices[0].finish_reason == "stop"


def test_long_tool_output_is_truncated_with_a_marker(
    client: openai.OpenAI, mcp_server: RunningMcpServer
) -> None:
    completion = ask(
        client,
        'call calc__big {"size": 5000}',
        [mcp_tool(mcp_server)],
        extra_body={"mcp_limits": {"max_tool_output_chars": 400}},
    )
    output = calls_of(completion)[0]["output"]
    assert len(output) == 400
    assert output.endswith("[toolbridge: output truncated from 5000 to 400 characters]")


def test_request_cannot_raise_configured_limits(
    client: openai.OpenAI, mcp_server: RunningMcpServer
) -> None:
    completion = ask(
        client,
        'always call calc__echo {"text": "x"}',
        [mcp_tool(mcp_server)],
        extra_body={"mcp_limits": {"max_turns": 1000}},
    )
    details = completion.model_extra["toolbridge"]["incomplete_details"]
    assert "10 model turns" in details["message"]  # the configured default, not 1000
    assert json.loads(calls_of(completion)[0]["arguments"]) == {"text": "x"}


def test_arguments_are_checked_against_the_input_schema(
    client: openai.OpenAI, mcp_server: RunningMcpServer
) -> None:
    completion = ask(client, 'call calc__add {"a": "two", "b": 2}', [mcp_tool(mcp_server)])
    error = calls_of(completion)[0]["error"]["message"]
    assert error.startswith("The arguments do not match the tool's input schema at a:")
    assert mcp_server.log.methods["tools/call"] == 0


def test_oversized_arguments_are_refused(
    client: openai.OpenAI, toolbridge_factory: Any, mcp_server: RunningMcpServer
) -> None:
    server = toolbridge_factory(limits={"max_tool_argument_bytes": 256})
    small = openai.OpenAI(base_url=f"{server.url}/v1", api_key=client.api_key, max_retries=0)
    text = "y" * 300
    completion = ask(small, f'call calc__echo {{"text": "{text}"}}', [mcp_tool(mcp_server)])
    assert calls_of(completion)[0]["error"]["message"] == "The arguments are larger than 256 bytes."
    assert mcp_server.log.methods["tools/call"] == 0


def test_registered_stdio_servers_get_their_configured_environment_only(
    toolbridge_factory: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TB_TEST_SECRET_SOURCE", "s3cret")
    servers = [
        {
            "label": "env_calc",
            "transport": "stdio",
            "command": [sys.executable, "-m", "tests.fixtures.mcp_servers"],
            "env": {"TB_LITERAL": "plain"},
            "env_from_env": {"TB_SECRET": "TB_TEST_SECRET_SOURCE"},
        }
    ]
    server = toolbridge_factory(mcp_servers=servers)
    client = openai.OpenAI(base_url=f"{server.url}/v1", api_key=TEST_KEY, max_retries=0)
    script = "\n".join(
        f'call env_calc__env_var {{"name": "{name}"}}'
        for name in ("TB_LITERAL", "TB_SECRET", "TB_TEST_SECRET_SOURCE")
    )
    completion = ask(client, script, [{"type": "mcp", "server_label": "env_calc"}])
    outputs = [call["output"] for call in calls_of(completion)]
    assert outputs == ["plain", "s3cret", "unset"]  # toolbridge's own variables stay its own
