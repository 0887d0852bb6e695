"""Credentials never leak (logs at DEBUG, Redis, responses); logs are JSON with request ids."""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from typing import Any

import httpx
import openai
import pytest

from app.logs import JsonFormatter
from tests.conftest import TEST_KEY, mcp_tool, sync_redis
from tests.fixtures.mcp_servers import RunningMcpServer
from tests.fixtures.servers import ServerThread

HEADER_SECRET = "hdr-SECRET-7f3a9"
BEARER_SECRET = "bearer-SECRET-c41d"
QUERY_SECRET = "query-SECRET-91be"


class Collect(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.setFormatter(JsonFormatter())
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        # Only toolbridge's own lines: the test's client and MCP servers share this process.
        if record.threadName.startswith("toolbridge"):
            self.lines.append(self.format(record))


@pytest.fixture
def debug_logs() -> Iterator[Collect]:
    """Every logger at DEBUG, collected as the JSON lines toolbridge writes."""
    handler = Collect()
    root = logging.getLogger()
    touched = {
        name: logging.getLogger(name).level
        for name in ("", "httpx2", "aiohttp", "LiteLLM", "LiteLLM Router", "litellm", "mcp", "app")
    }
    root.addHandler(handler)
    for name in touched:
        logging.getLogger(name).setLevel(logging.DEBUG)
    yield handler
    root.removeHandler(handler)
    for name, level in touched.items():
        logging.getLogger(name).setLevel(level)


def test_secrets_appear_in_no_log_no_store_no_response(
    debug_logs: Collect, client: openai.OpenAI, mcp_server: RunningMcpServer, redis_url: str
) -> None:
    tool: dict[str, Any] = mcp_tool(
        mcp_server,
        server_url=f"{mcp_server.url}?token={QUERY_SECRET}",
        headers={"X-Api-Key": HEADER_SECRET},
        authorization=BEARER_SECRET,
        require_approval="never",
    )
    outputs = [
        client.chat.completions.create(
            model="scripted-a",
            tools=[tool],  # type: ignore[list-item]
            messages=[{"role": "user", "content": 'call calc__echo {"text": "x"}'}],
        ).model_dump_json()
    ]
    response = client.responses.create(
        model="scripted-a",
        tools=[tool],  # type: ignore[arg-type]
        input='call calc__echo {"text": "x"}',
    )
    assert response.tools[0].server_url.endswith("?token=REDACTED")  # echoed without its value
    outputs.append(response.model_dump_json())
    outputs.append(client.responses.retrieve(response.id).model_dump_json())
    dead = {**tool, "server_url": "http://127.0.0.1:9/mcp"}
    with pytest.raises(openai.APIStatusError) as caught:
        client.chat.completions.create(
            model="scripted-a",
            tools=[dead],  # type: ignore[arg-type]
            messages=[{"role": "user", "content": "x"}],
        )
    outputs.append(json.dumps(caught.value.body))
    assert mcp_server.log.headers[-1]["x-api-key"] == HEADER_SECRET  # it was used
    assert mcp_server.log.queries[-1] == f"token={QUERY_SECRET}"  # so was the query
    # DEBUG logging really was on: the SDK logged every message it sent, headers and all.
    assert sum('"level": "DEBUG", "logger": "mcp.' in line for line in debug_logs.lines) > 5
    secrets = (HEADER_SECRET, BEARER_SECRET, QUERY_SECRET, TEST_KEY, "sk-provider")
    for line in debug_logs.lines + outputs:
        assert not any(secret in line for secret in secrets), line
    store = sync_redis(redis_url)
    for key in store.scan_iter():
        if store.type(key) == b"string":
            value = store.get(key) or b""
            assert not any(secret.encode() in value for secret in secrets), key


def test_request_id_is_accepted_returned_and_logged(
    debug_logs: Collect, toolbridge: ServerThread
) -> None:
    headers = {"Authorization": f"Bearer {TEST_KEY}", "X-Request-ID": "trace-42"}
    response = httpx.post(
        f"{toolbridge.url}/v1/chat/completions",
        headers=headers,
        timeout=30,
        json={"model": "nope", "messages": [{"role": "user", "content": "x"}]},
    )
    assert response.headers["x-request-id"] == "trace-42"
    generated = httpx.get(f"{toolbridge.url}/healthz").headers["x-request-id"]
    assert generated.startswith("req_")
    bad = httpx.get(f"{toolbridge.url}/healthz", headers={"X-Request-ID": "a b<c>"})
    assert bad.headers["x-request-id"].startswith("req_")  # not echoed as given
    tagged = [json.loads(line) for line in debug_logs.lines if "trace-42" in line]
    assert tagged and all(entry["request_id"] == "trace-42" for entry in tagged)
