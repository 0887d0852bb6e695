"""Servers with more tools than a model accepts: the servers with the most tools are deferred
behind tool search (said so), instead of a request the provider would refuse; a tool list past
the configured bound fails its server with 424; pagination is followed."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from typing import Any

import openai
import pytest

from tests.conftest import TEST_KEY, mcp_tool
from tests.fixtures.huge_server import many_tools_app, many_tools_process
from tests.fixtures.mcp_servers import RunningMcpServer
from tests.fixtures.servers import ServerThread

CAPPED = "scripted-b"
"""A model that takes OpenAI's 128 tools a call (the default ``max_tools``)."""


@pytest.fixture(scope="module")
def sixty_tool_servers() -> Iterator[list[str]]:
    servers = [
        ServerThread(many_tools_app(f"s{i}", 60), name=f"sixty-{i}").start() for i in range(3)
    ]
    yield [f"{server.url}/mcp" for server in servers]
    for server in servers:
        server.stop()


@pytest.fixture(scope="module")
def twenty_thousand() -> Iterator[str]:
    with many_tools_process("20000") as url:
        yield url


@pytest.fixture(scope="module")
def paged() -> Iterator[str]:
    with many_tools_process("250", "100") as url:  # three pages
        yield url


def _offered(scripted_model: ServerThread, before: int) -> list[list[str]]:
    calls = scripted_model.server.config.app.state.calls[before:]
    return [[t["function"]["name"] for t in call.get("tools") or []] for call in calls]


def _server(url: str, label: str) -> dict[str, Any]:
    return {"type": "mcp", "server_label": label, "server_url": url, "require_approval": "never"}


def test_three_sixty_tool_servers_fit_the_model_by_deferring_two(
    client: openai.OpenAI, sixty_tool_servers: list[str], scripted_model: ServerThread
) -> None:
    tools: Any = [_server(url, f"s{i}") for i, url in enumerate(sixty_tool_servers)]
    before = len(scripted_model.server.config.app.state.calls)
    response = client.responses.create(
        model=CAPPED,
        tools=tools,
        input='call tool_search {"query": "record 7 invoices", "server_label": "s0"}\n'
        'then call s0__record_7 {"id": "x"}',
    )
    listed = [item for item in response.output if item.type == "mcp_list_tools"]
    notes = {item.server_label: (item.model_extra or {}).get("notes") for item in listed}
    assert notes["s2"] is None  # the one that fits stays offered
    for label in ("s0", "s1"):  # equal sizes: deferred in label order
        (note,) = notes[label]
        assert note["kind"] == "tools_deferred" and "at most 128 tools" in note["message"]
    offered = _offered(scripted_model, before)
    assert all(len(names) <= 128 for names in offered)
    assert "tool_search" in offered[0] and "s0__record_7" not in offered[0]
    assert "s0__record_7" in offered[1]  # loaded by the search
    call = next(item for item in response.output if item.type == "mcp_call")
    assert (call.server_label, call.name, call.status) == ("s0", "record_7", "completed")
    # A model that takes them all gets them all, as before.
    before = len(scripted_model.server.config.app.state.calls)
    plain = client.responses.create(model="scripted-a", tools=tools, input="say all")
    assert plain.output_text == "all"
    assert len(_offered(scripted_model, before)[0]) == 180


def test_a_twenty_thousand_tool_server_is_searched_not_sent(
    client: openai.OpenAI,
    twenty_thousand: str,
    mcp_server: RunningMcpServer,
    scripted_model: ServerThread,
) -> None:
    before = len(scripted_model.server.config.app.state.calls)
    completion = client.chat.completions.create(
        model=CAPPED,
        tools=[_server(twenty_thousand, "huge"), mcp_tool(mcp_server)],  # type: ignore[list-item]
        messages=[
            {
                "role": "user",
                "content": 'call tool_search {"query": "read record 12345 people"}\n'
                'then call huge__record_12345 {"id": "p"}',
            }
        ],
    )
    extension = completion.model_extra["toolbridge"]  # type: ignore[index]
    [deferred] = extension["deferred_servers"]
    assert (deferred["server_label"], deferred["tools"]) == ("huge", 20_000)
    offered = _offered(scripted_model, before)
    assert all(len(names) <= 128 for names in offered)
    assert any(name.startswith("calc__") for name in offered[0])  # the small server stays
    [call] = extension["mcp_calls"]
    assert call["status"] == "completed" and call["output"] == "record_12345({'id': 'p'})"


def test_a_tool_list_past_the_bound_is_a_424_and_pages_are_followed(
    toolbridge_factory: Callable[..., ServerThread], twenty_thousand: str, paged: str
) -> None:
    bounded = toolbridge_factory(mcp_max_listed_tools=10_000)
    client = openai.OpenAI(base_url=f"{bounded.url}/v1", api_key=TEST_KEY, max_retries=0)
    with pytest.raises(openai.APIStatusError) as caught:
        client.responses.create(
            model="scripted-a", tools=[_server(twenty_thousand, "huge")], input="say x"
        )
    assert caught.value.status_code == 424
    assert "more than 10000 tools" in json.dumps(caught.value.body)
    listed = client.responses.create(
        model="scripted-a", tools=[_server(paged, "paged")], input="say x"
    )
    [item] = [i for i in listed.output if i.type == "mcp_list_tools"]
    assert len(item.tools) == 250  # three pages, nextCursor followed
