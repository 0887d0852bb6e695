"""/v1/responses with the official OpenAI SDK, real MCP servers and the scripted model."""

from __future__ import annotations

import json
from typing import Any

import httpx
import mcp_types
import openai
import pytest

from app.demo.scripted_model import _prompt_tokens
from tests.conftest import LIMITED_KEY, mcp_tool, sync_redis
from tests.fixtures.mcp_servers import RunningMcpServer
from tests.fixtures.servers import ServerThread

ADD = 'call calc__add {"a": 1, "b": 2}'


def never(server: RunningMcpServer, **extra: Any) -> dict[str, Any]:
    return mcp_tool(server, require_approval="never", **extra)


def types_of(response: Any) -> list[str]:
    return [item.type for item in response.output]


def test_mcp_items_and_answer(
    client: openai.OpenAI, mcp_server: RunningMcpServer, scripted_model: ServerThread
) -> None:
    calls = scripted_model.server.config.app.state.calls
    before = len(calls)
    response = client.responses.create(model="scripted-a", input=ADD, tools=[never(mcp_server)])
    assert response.id.startswith("resp_") and response.status == "completed"
    assert types_of(response) == ["mcp_list_tools", "mcp_call", "message"]
    listed, call, message = response.output
    assert listed.id.startswith("mcpl_") and listed.server_label == "calc"
    assert {t.name for t in listed.tools} >= {"add", "echo", "files.read-v2"}
    echo = next(t for t in listed.tools if t.name == "echo")
    assert echo.annotations == {"readOnlyHint": True}
    assert call.id.startswith("mcp_") and call.name == "add" and call.status == "completed"
    assert json.loads(call.arguments) == {"a": 1, "b": 2} and call.output == "3"
    assert message.id.startswith("msg_")
    assert response.output_text == "done: calc__add=3"
    assert response.usage.total_tokens == response.usage.input_tokens + response.usage.output_tokens
    # Both model calls are counted as the model billed them (6 + 7 words, the tool schemas
    # offered twice, the tool call once), 1 tool call + 2 words out.
    billed = [_prompt_tokens(c["messages"], c.get("tools") or []) for c in calls[before:]]
    assert len(billed) == 2 and min(billed) > 13  # the schemas are billed
    assert (response.usage.input_tokens, response.usage.output_tokens) == (sum(billed), 3)


def test_credentials_are_never_echoed_or_stored(
    client: openai.OpenAI, mcp_server: RunningMcpServer, redis_url: str
) -> None:
    tool = never(mcp_server, headers={"X-Test-Token": "sekrit-123"}, authorization="tok-456")
    response = client.responses.create(
        model="scripted-a", input='call calc__echo {"text": "a"}', tools=[tool]
    )
    assert response.output_text == "done: calc__echo=a"
    assert mcp_server.log.headers[-1]["x-test-token"] == "sekrit-123"  # it was sent
    echoed = response.tools[0]
    assert echoed.headers is None and echoed.authorization is None
    assert "sekrit-123" not in response.model_dump_json()
    store = sync_redis(redis_url)
    for key in store.scan_iter():
        if store.type(key) == b"string":
            value = store.get(key) or b""
            assert b"sekrit-123" not in value and b"tok-456" not in value, key


def test_approval_then_approve_runs_the_call_and_reuses_the_list(
    client: openai.OpenAI, mcp_server: RunningMcpServer
) -> None:
    tools = [mcp_tool(mcp_server)]  # require_approval omitted: "always", as at OpenAI
    first = client.responses.create(model="scripted-a", input=ADD, tools=tools)
    assert first.status == "completed"
    assert types_of(first) == ["mcp_list_tools", "mcp_approval_request"]
    request = first.output[1]
    assert request.id.startswith("mcpr_") and request.name == "add"
    assert mcp_server.log.methods["tools/call"] == 0
    mcp_server.log.reset()
    second = client.responses.create(
        model="scripted-a",
        previous_response_id=first.id,
        tools=tools,
        input=[
            {"type": "mcp_approval_response", "approval_request_id": request.id, "approve": True}
        ],
    )
    assert types_of(second) == ["mcp_call", "message"]
    assert second.output[0].approval_request_id == request.id
    assert second.output_text == "done: calc__add=3"
    assert mcp_server.log.methods["tools/list"] == 0  # the list in the conversation is reused
    assert mcp_server.log.methods["tools/call"] == 1


def test_denied_call_does_not_run_and_the_model_is_told_why(
    client: openai.OpenAI, mcp_server: RunningMcpServer
) -> None:
    tools = [mcp_tool(mcp_server, require_approval="always")]
    first = client.responses.create(model="scripted-a", input=ADD, tools=tools)
    request = first.output[-1]
    second = client.responses.create(
        model="scripted-a",
        previous_response_id=first.id,
        tools=tools,
        input=[
            {
                "type": "mcp_approval_response",
                "approval_request_id": request.id,
                "approve": False,
                "reason": "not today",
            }
        ],
    )
    assert types_of(second) == ["mcp_call", "message"]  # the call, marked as not run
    skipped = second.output[0]
    assert skipped.status == "incomplete" and skipped.approval_request_id == request.id
    assert skipped.output is None and skipped.error is None
    assert "did not approve" in second.output_text and "not today" in second.output_text
    assert mcp_server.log.methods["tools/call"] == 0
    third = client.responses.create(  # the folded conversation has no duplicate call
        model="scripted-a", previous_response_id=second.id, tools=tools, input="say ok"
    )
    assert third.output_text == "ok"


def test_approval_filters(client: openai.OpenAI, mcp_server: RunningMcpServer) -> None:
    tool = mcp_tool(mcp_server, require_approval={"never": {"read_only": True}})
    response = client.responses.create(
        model="scripted-a",
        tools=[tool],
        input='call calc__echo {"text": "hi"}\ncall calc__add {"a": 1, "b": 1}',
    )
    # echo is annotated read-only so it runs; add waits for approval.
    assert types_of(response) == ["mcp_list_tools", "mcp_call", "mcp_approval_request"]
    assert response.output[1].name == "echo" and response.output[2].name == "add"


@pytest.mark.parametrize("allowed", [["echo"], {"tool_names": ["echo"]}, {"read_only": True}])
def test_allowed_tools_forms(
    client: openai.OpenAI, mcp_server: RunningMcpServer, allowed: Any
) -> None:
    response = client.responses.create(
        model="scripted-a", input="say hi", tools=[never(mcp_server, allowed_tools=allowed)]
    )
    assert [t.name for t in response.output[0].tools] == ["echo"]


def test_replayed_items_instead_of_previous_response_id(
    client: openai.OpenAI, mcp_server: RunningMcpServer
) -> None:
    tools = [mcp_tool(mcp_server)]
    first = client.responses.create(model="scripted-a", input=ADD, tools=tools, store=False)
    mcp_server.log.reset()
    replay = [
        {"role": "user", "content": ADD},
        *[item.model_dump(exclude_none=True) for item in first.output],
        {
            "type": "mcp_approval_response",
            "approval_request_id": first.output[-1].id,
            "approve": True,
        },
    ]
    second = client.responses.create(model="scripted-a", input=replay, tools=tools, store=False)
    assert second.output_text == "done: calc__add=3"
    assert mcp_server.log.methods["tools/list"] == 0


def test_function_call_continuation_sees_earlier_mcp_calls(
    client: openai.OpenAI, mcp_server: RunningMcpServer
) -> None:
    weather = {
        "type": "function",
        "name": "get_weather",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}},
    }
    tools = [never(mcp_server), weather]
    first = client.responses.create(
        model="scripted-a",
        tools=tools,
        input='call calc__add {"a": 2, "b": 2}\ncall get_weather {"city": "Oslo"}',
    )
    # The client call streams as it arrives, before the MCP call of the same turn runs.
    assert types_of(first) == ["mcp_list_tools", "function_call", "mcp_call"]
    call = first.output[1]
    assert call.id.startswith("fc_") and json.loads(call.arguments) == {"city": "Oslo"}
    second = client.responses.create(
        model="scripted-a",
        previous_response_id=first.id,
        tools=tools,
        input=[{"type": "function_call_output", "call_id": call.call_id, "output": "sunny"}],
    )
    assert second.output_text == "done: calc__add=4; get_weather=sunny"


def test_stored_response_retrieve_delete_and_input_items(
    client: openai.OpenAI, toolbridge: ServerThread, mcp_server: RunningMcpServer
) -> None:
    created = client.responses.create(model="scripted-a", input="say stored", metadata={"k": "v"})
    assert client.responses.retrieve(created.id).output_text == "stored"
    items = client.responses.input_items.list(created.id)
    assert [i.type for i in items.data] == ["message"]
    assert items.data[0].content[0].text == "say stored"
    other = openai.OpenAI(base_url=f"{toolbridge.url}/v1", api_key=LIMITED_KEY)
    with pytest.raises(openai.NotFoundError):
        other.responses.retrieve(created.id)
    with pytest.raises(openai.NotFoundError):
        other.responses.create(model="scripted-b", input="x", previous_response_id=created.id)
    client.responses.delete(created.id)
    with pytest.raises(openai.NotFoundError):
        client.responses.retrieve(created.id)


def test_store_false_keeps_nothing(client: openai.OpenAI) -> None:
    created = client.responses.create(model="scripted-a", input="say gone", store=False)
    assert created.store is False
    with pytest.raises(openai.NotFoundError):
        client.responses.retrieve(created.id)
    with pytest.raises(openai.NotFoundError):
        client.responses.create(model="scripted-a", input="x", previous_response_id=created.id)


def test_max_tool_calls_ends_incomplete(
    client: openai.OpenAI, mcp_server: RunningMcpServer
) -> None:
    response = client.responses.create(
        model="scripted-a",
        tools=[never(mcp_server)],
        max_tool_calls=1,
        input='always call calc__echo {"text": "x"}',
    )
    assert response.status == "incomplete"
    assert response.incomplete_details.reason == "max_tool_calls"
    ran, skipped = [i for i in response.output if i.type == "mcp_call"]
    assert ran.status == "completed" and skipped.status == "incomplete"  # the 2nd did not run


def test_dead_server_is_424(client: openai.OpenAI) -> None:
    with pytest.raises(openai.APIStatusError) as caught:
        client.responses.create(
            model="scripted-a",
            input="hi",
            tools=[
                {
                    "type": "mcp",
                    "server_label": "gone",
                    "server_url": "http://127.0.0.1:9/mcp",
                    "require_approval": "never",
                }
            ],
        )
    assert caught.value.status_code == 424
    assert caught.value.body["code"] == "external_connector_error"


def test_connector_id_is_400(toolbridge: ServerThread, client: openai.OpenAI) -> None:
    with pytest.raises(openai.BadRequestError):
        client.responses.create(
            model="scripted-a",
            input="hi",
            tools=[
                {"type": "mcp", "server_label": "drive", "connector_id": "connector_googledrive"}
            ],
        )


def test_unknown_previous_response_is_404(client: openai.OpenAI) -> None:
    with pytest.raises(openai.NotFoundError):
        client.responses.create(model="scripted-a", input="x", previous_response_id="resp_nope")


def test_bad_input_item_is_400_with_param(toolbridge: ServerThread) -> None:
    response = httpx.post(
        f"{toolbridge.url}/v1/responses",
        timeout=30,
        headers={"Authorization": "Bearer sk-test-full-access"},
        json={"model": "scripted-a", "input": [{"type": "telepathy"}]},
    )
    assert response.status_code == 400
    assert response.json()["error"]["param"] == "input[0]"


def test_a_replayed_list_is_filtered_by_the_sdk_before_the_model_sees_it(
    client: openai.OpenAI, mcp_server: RunningMcpServer, scripted_model: ServerThread
) -> None:
    """A 2026-07-28 client must drop tools with invalid x-mcp-header annotations; a list the
    caller replays goes through the same filter as one the server sent."""
    tools = [mcp_tool(mcp_server, require_approval="never")]
    first = client.responses.create(model="scripted-a", input="hi", tools=tools, store=False)
    listing = first.output[0].model_dump(exclude_none=True)
    bad_schema = {
        "type": "object",
        "properties": {"region": {"type": "object", "x-mcp-header": "Region"}},
    }
    listing["tools"].append({"name": "smuggled", "input_schema": bad_schema})
    replay = [listing, {"role": "user", "content": "say hi"}]
    calls = scripted_model.server.config.app.state.calls
    before = len(calls)
    client.responses.create(model="scripted-a", input=replay, tools=tools, store=False)
    offered = [t["function"]["name"] for t in calls[before]["tools"]]
    assert "calc__echo" in offered and "calc__smuggled" not in offered


@pytest.mark.parametrize(
    ("extra", "param"),
    [
        ({"tunnel_id": "tunnel_1"}, "tools[0].tunnel_id"),
        ({"allowed_callers": ["programmatic"]}, "tools[0].allowed_callers"),
        ({"allowed_callers": ["direct", "programmatic"]}, "tools[0].allowed_callers"),
    ],
)
def test_what_cannot_be_honoured_is_a_400_naming_it(
    client: openai.OpenAI, mcp_server: RunningMcpServer, extra: dict[str, Any], param: str
) -> None:
    with pytest.raises(openai.BadRequestError) as caught:
        client.responses.create(
            model="scripted-a", input="hi", tools=[mcp_tool(mcp_server, **extra)]
        )
    assert caught.value.body["param"] == param


def test_direct_callers_and_mcp_limits_are_honoured(
    client: openai.OpenAI, mcp_server: RunningMcpServer
) -> None:
    response = client.responses.create(
        model="scripted-a",
        input='always call calc__echo {"text": "x"}',
        tools=[mcp_tool(mcp_server, allowed_callers=["direct"], require_approval="never")],
        extra_body={"mcp_limits": {"max_turns": 2}},
    )
    assert response.status == "incomplete"
    assert response.incomplete_details.reason == "max_turns"
    statuses = [item.status for item in response.output if item.type == "mcp_call"]
    assert statuses == ["completed", "incomplete"]


def test_a_server_without_tools_is_a_server_with_no_tools(client: openai.OpenAI) -> None:
    """A server that declares only prompts (no ``tools`` capability) is not a failure."""
    from mcp.server.lowlevel import Server

    async def list_prompts(ctx: Any, params: Any) -> mcp_types.ListPromptsResult:
        return mcp_types.ListPromptsResult(prompts=[mcp_types.Prompt(name="greet")])

    server = Server("prompts-only", on_list_prompts=list_prompts)
    thread = ServerThread(server.streamable_http_app()).start()
    try:
        response = client.responses.create(
            model="scripted-a",
            input="say fine",
            tools=[
                {
                    "type": "mcp",
                    "server_label": "prompts",
                    "server_url": f"{thread.url}/mcp",
                    "require_approval": "never",
                }
            ],
        )
    finally:
        thread.stop()
    listing, message = response.output
    assert listing.type == "mcp_list_tools" and listing.tools == [] and listing.error is None
    assert response.output_text == "fine"


def test_request_parameters_reach_the_model_as_chat_parameters(
    client: openai.OpenAI, scripted_model: ServerThread, mcp_server: RunningMcpServer
) -> None:
    """Responses' own names become what a chat model takes: max_output_tokens -> max_tokens,
    text.format -> response_format, reasoning.effort -> reasoning_effort, and a tool_choice
    naming an MCP tool -> that tool's function."""
    calls = scripted_model.server.config.app.state.calls
    before = len(calls)
    schema = {"type": "object", "properties": {"a": {"type": "integer"}}, "required": ["a"]}
    response = client.responses.create(
        model="scripted-a",
        input="say hi",
        max_output_tokens=50,
        text={"format": {"type": "json_schema", "name": "answer", "schema": schema}},
        reasoning={"effort": "low"},
        tools=[never(mcp_server)],
        tool_choice={"type": "mcp", "server_label": "calc", "name": "add"},
    )
    sent = calls[before]
    assert sent["max_tokens"] == 50
    assert sent["response_format"] == {
        "type": "json_schema",
        "json_schema": {"name": "answer", "schema": schema},
    }
    assert sent["reasoning_effort"] == "low"
    assert sent["tool_choice"] == {"type": "function", "function": {"name": "calc__add"}}
    # And the response echoes the request as OpenAI's does.
    assert response.max_output_tokens == 50 and response.reasoning is not None
    assert response.reasoning.effort == "low"
    assert response.text is not None and response.text.format is not None
    assert response.text.format.type == "json_schema"
    # A tool_choice naming only the server: some tool must be called.
    client.responses.create(
        model="scripted-a",
        input="say hi",
        tools=[never(mcp_server)],
        tool_choice={"type": "mcp", "server_label": "calc"},
    )
    assert calls[-1]["tool_choice"] == "required"


def test_input_items_pages_in_either_order(client: openai.OpenAI) -> None:
    words = [f"say w{i}" for i in range(5)]
    created = client.responses.create(
        model="scripted-a", input=[{"role": "user", "content": w} for w in words]
    )

    def texts(page: Any) -> list[str]:
        return [item.content[0].text for item in page.data]

    newest_first = client.responses.input_items.list(created.id, limit=2)
    assert texts(newest_first) == ["say w4", "say w3"] and newest_first.has_more
    assert newest_first.first_id == newest_first.data[0].id
    assert newest_first.last_id == newest_first.data[-1].id
    rest = client.responses.input_items.list(created.id, limit=2, after=newest_first.last_id)
    assert texts(rest) == ["say w2", "say w1"] and rest.has_more
    last = client.responses.input_items.list(created.id, limit=2, after=rest.last_id)
    assert texts(last) == ["say w0"] and not last.has_more
    oldest_first = client.responses.input_items.list(created.id, order="asc", limit=3)
    assert texts(oldest_first) == words[:3] and oldest_first.has_more
    tail = client.responses.input_items.list(created.id, order="asc", after=oldest_first.last_id)
    assert texts(tail) == words[3:] and not tail.has_more
    # Every item, by iterating the SDK's auto-paging (it follows `after` itself).
    paged = [i.content[0].text for i in client.responses.input_items.list(created.id, limit=1)]
    assert paged == words[::-1]
    # A cursor that names no item of this response ends the listing (nothing is repeated).
    unknown = client.responses.input_items.list(created.id, after="msg_not_here")
    assert unknown.data == [] and not unknown.has_more
