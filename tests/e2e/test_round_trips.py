"""Few round trips: cached tool lists (Redis, shared), remembered eras, one call per tool call."""

from __future__ import annotations

import uuid
from typing import Any

import openai
import pytest

from tests.conftest import TEST_KEY, mcp_tool
from tests.fixtures.mcp_servers import RunningMcpServer
from tests.fixtures.servers import ServerThread

SCRIPT = 'call calc__add {"a": 1, "b": 1}'


@pytest.fixture
def fresh_client(toolbridge_factory: Any) -> openai.OpenAI:
    """A toolbridge with its own Redis prefix: nothing cached yet."""
    server: ServerThread = toolbridge_factory()
    return openai.OpenAI(base_url=f"{server.url}/v1", api_key=TEST_KEY, max_retries=0)


def run(client: openai.OpenAI, server: RunningMcpServer, **tool: Any) -> None:
    completion = client.chat.completions.create(
        model="scripted-a",
        messages=[{"role": "user", "content": SCRIPT}],
        tools=[mcp_tool(server, **tool)],
    )  # type: ignore[list-item]
    assert completion.choices[0].message.content == "done: calc__add=2"


def test_warm_modern_server_costs_one_http_request_per_tool_call(
    fresh_client: openai.OpenAI, mcp_server: RunningMcpServer
) -> None:
    run(fresh_client, mcp_server)
    assert mcp_server.log.methods["server/discover"] == 1
    assert mcp_server.log.methods["tools/list"] == 1
    mcp_server.log.reset()
    run(fresh_client, mcp_server)
    assert dict(mcp_server.log.methods) == {"tools/call": 1}
    assert mcp_server.log.http_requests == 1


def test_private_tool_lists_are_not_shared_across_credentials(
    fresh_client: openai.OpenAI, mcp_server: RunningMcpServer
) -> None:
    run(fresh_client, mcp_server, headers={"X-Test-Token": "alice"})
    mcp_server.log.reset()
    run(fresh_client, mcp_server, headers={"X-Test-Token": "bob"})
    assert mcp_server.log.methods["tools/list"] == 1
    mcp_server.log.reset()
    run(fresh_client, mcp_server, headers={"X-Test-Token": "bob"})
    assert mcp_server.log.methods["tools/list"] == 0


def test_tool_list_cache_is_shared_by_replicas(
    toolbridge_factory: Any, mcp_server: RunningMcpServer
) -> None:
    shared = f"tb-shared-replicas-{uuid.uuid4().hex[:8]}:"  # two replicas, one fresh Redis space
    first = toolbridge_factory(redis_prefix=shared)
    second = toolbridge_factory(redis_prefix=shared)
    for replica in (first, second):
        client = openai.OpenAI(base_url=f"{replica.url}/v1", api_key=TEST_KEY, max_retries=0)
        run(client, mcp_server)
    assert mcp_server.log.methods["tools/list"] == 1
    assert mcp_server.log.methods["server/discover"] == 1


@pytest.mark.parametrize("kind", ["legacy", "stateless", "sse"])
def test_warm_older_servers_skip_listing_and_probing(
    fresh_client: openai.OpenAI, mcp_servers: dict[str, RunningMcpServer], kind: str
) -> None:
    server = mcp_servers[kind]
    run(fresh_client, server)
    server.log.reset()
    run(fresh_client, server)
    assert server.log.methods["tools/list"] == 0
    assert server.log.methods["server/discover"] == 0
    assert server.log.methods["tools/call"] == 1
