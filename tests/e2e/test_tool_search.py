"""Tool search for deferred MCP servers (``defer_loading`` + ``tool_search``), executed by
toolbridge for any model, against a real 200-tool MCP server."""

from __future__ import annotations

import time
from typing import Any

import httpx
import litellm
import openai

from tests.conftest import TEST_KEY
from tests.fixtures.servers import ServerThread

SEARCH_THEN_CALL = (
    'call tool_search {"query": "weather forecast for a city"}\n'
    'then call big__get_weather_forecast {"city": "Oslo"}'
)


def deferred(url: str, **extra: Any) -> list[dict[str, Any]]:
    mcp = {
        "type": "mcp",
        "server_label": "big",
        "server_url": url,
        "server_description": "Business records and weather",
        "require_approval": "never",
        "defer_loading": True,
    }
    return [{**mcp, **extra}, {"type": "tool_search"}]


def model_requests(scripted_model: ServerThread, since: int) -> list[dict[str, Any]]:
    return list(scripted_model.server.config.app.state.calls[since:])


def test_a_search_loads_the_best_tools_at_the_end_of_the_list(
    client: openai.OpenAI, big_server: str, scripted_model: ServerThread
) -> None:
    before = len(scripted_model.server.config.app.state.calls)
    response = client.responses.create(
        model="scripted-a", input=SEARCH_THEN_CALL, tools=deferred(big_server)
    )
    kinds = [item.type for item in response.output]
    assert kinds == [
        "mcp_list_tools",
        "tool_search_call",
        "tool_search_output",
        "mcp_call",
        "message",
    ]
    listing, search_item, output_item, call = response.output[:4]
    assert len(listing.tools) == 200  # listed, but not offered until searched
    search_call, search_output = search_item.model_dump(), output_item.model_dump()
    assert search_call["execution"] == "server" and search_output["execution"] == "server"
    assert search_call["arguments"] == {"query": "weather forecast for a city"}
    assert search_call["call_id"] == search_output["call_id"]
    (namespace,) = search_output["tools"]
    assert namespace["type"] == "namespace" and namespace["name"] == "big"
    assert namespace["description"] == "Business records and weather"
    assert namespace["tools"][0]["name"] == "get_weather_forecast"
    assert call.name == "get_weather_forecast" and call.output == "forecast for Oslo: 12C, rain"
    first, second, third = model_requests(scripted_model, before)
    assert [t["function"]["name"] for t in first["tools"]] == ["tool_search"]
    names = [t["function"]["name"] for t in second["tools"]]
    assert names[0] == "tool_search" and names[1] == "big__get_weather_forecast"
    assert len(names) <= 6  # the search and at most five loaded tools
    assert [t["function"]["name"] for t in third["tools"]] == names  # loaded stays loaded

    again = client.responses.create(  # a continuation keeps what was loaded
        model="scripted-a",
        previous_response_id=response.id,
        tools=deferred(big_server),
        input='call big__get_weather_forecast {"city": "Bergen"}',
    )
    assert [item.type for item in again.output] == ["mcp_call", "message"]
    assert again.output[0].output == "forecast for Bergen: 12C, rain"


def test_chat_searches_too_and_says_so_in_its_extension(
    client: openai.OpenAI, big_server: str
) -> None:
    completion = client.chat.completions.create(
        model="scripted-a",
        messages=[{"role": "user", "content": SEARCH_THEN_CALL}],
        tools=deferred(big_server),  # type: ignore[arg-type]
    )
    answer = completion.choices[0].message.content  # the results of both steps, in order
    assert answer.startswith("done: tool_search=Loaded these tools")
    assert answer.endswith("; big__get_weather_forecast=forecast for Oslo: 12C, rain")
    extension = completion.model_extra["toolbridge"]
    (search,) = extension["tool_searches"]
    assert search["arguments"] == {"query": "weather forecast for a city"}
    assert search["loaded"][0] == {
        "server_label": "big",
        "name": "get_weather_forecast",
        "tool": "big__get_weather_forecast",
    }
    assert [c["name"] for c in extension["mcp_calls"]] == ["get_weather_forecast"]


def test_a_tool_not_loaded_cannot_be_called(client: openai.OpenAI, big_server: str) -> None:
    completion = client.chat.completions.create(
        model="scripted-a",
        messages=[{"role": "user", "content": 'call big__get_weather_forecast {"city": "x"}'}],
        tools=deferred(big_server),  # type: ignore[arg-type]
    )
    (call,) = completion.model_extra["toolbridge"]["mcp_calls"]
    assert call["error"]["message"] == "There is no tool named 'big__get_weather_forecast'."


def test_defer_loading_needs_tool_search_and_search_runs_on_the_server(
    toolbridge: ServerThread, big_server: str
) -> None:
    def post(tools: list[dict[str, Any]]) -> dict[str, Any]:
        response = httpx.post(
            f"{toolbridge.url}/v1/responses",
            json={"model": "scripted-a", "input": "hi", "tools": tools},
            headers={"Authorization": f"Bearer {TEST_KEY}"},
            timeout=30,
        )
        assert response.status_code == 400
        return dict(response.json()["error"])

    assert post(deferred(big_server)[:1])["param"] == "tools[0].defer_loading"
    client_search = [deferred(big_server)[0], {"type": "tool_search", "execution": "client"}]
    assert post(client_search)["param"] == "tools[1].execution"
    own = {"type": "function", "name": "tool_search", "parameters": {"type": "object"}}
    assert post([*deferred(big_server), own])["param"] == "tools[2]"  # the name is taken


def test_figures_prompt_tokens_and_search_latency(
    client: openai.OpenAI, big_server: str, scripted_model: ServerThread
) -> None:
    """Printed for the record (make test -s); asserted only where it cannot be noise."""
    eager = [{**deferred(big_server)[0], "defer_loading": False}]

    def first_prompt_tokens(tools: list[dict[str, Any]]) -> int:
        before = len(scripted_model.server.config.app.state.calls)
        client.responses.create(model="scripted-a", input="say hi", tools=tools)
        (request,) = model_requests(scripted_model, before)
        return int(
            litellm.token_counter(
                model="gpt-4o", messages=request["messages"], tools=request.get("tools")
            )
        )

    def seconds(script: str, tools: list[dict[str, Any]]) -> float:
        started = time.perf_counter()
        for _ in range(5):
            client.responses.create(model="scripted-a", input=script, tools=tools)
        return (time.perf_counter() - started) / 5

    with_all, with_search = first_prompt_tokens(eager), first_prompt_tokens(deferred(big_server))
    direct = seconds('call big__get_weather_forecast {"city": "Oslo"}', eager)
    searched = seconds(SEARCH_THEN_CALL, deferred(big_server))
    print(
        f"\nfirst model call, 200-tool server: {with_all} prompt tokens with every tool offered, "
        f"{with_search} with defer_loading; one run calling the tool: {1000 * direct:.0f} ms "
        f"with every tool offered (2 model calls), {1000 * searched:.0f} ms searching first "
        f"(3 model calls, small prompts)"
    )
    assert with_search * 20 < with_all
