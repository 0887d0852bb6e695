"""Hostile input, from a server or a caller: each attack ends within its limits with a clear
error (or a bounded answer), and an ordinary request sent meanwhile is served as usual. The
corpus grows with every finding (beside ``test_ssrf_corpus.py``)."""

from __future__ import annotations

import json
import re
import time
import zlib
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import mcp_types as types
import openai
import pytest
from mcp.server.mcpserver import MCPServer
from mcp.server.mcpserver.exceptions import ToolError
from starlette.types import ASGIApp, Receive, Scope, Send

from app.mcp.features.notes import MAX_NOTES, Notes, SamplingDeclined
from tests.conftest import TEST_KEY, mcp_tool
from tests.fixtures.huge_server import many_tools_process
from tests.fixtures.mcp_servers import RunningMcpServer
from tests.fixtures.servers import ServerThread
from tests.fixtures.waiting import wait_until

EVIL_PATTERN = "^(a+)+$"
"""Exponential for a backtracking engine on ``aaa…a!``: each extra ``a`` doubles the time."""
EVIL_VALUE = "a" * 40 + "!"
EVIL_SCHEMA = {
    "type": "object",
    "properties": {"v": {"type": "string", "pattern": EVIL_PATTERN}},
    "required": ["v"],
}
BOMB_MB = 512
ORDINARY_LIMIT_S = 1.0
"""An ordinary run (~15 ms here) sent while an attack runs; 60x headroom for a loaded box."""


class _EvilSchemas(MCPServer):
    """Declares ``match``'s schemas with a catastrophic pattern (an SDK server would not let
    its own tool declare what it then breaks, so the listing is rewritten)."""

    async def _handle_list_tools(self, ctx: Any, params: Any) -> types.ListToolsResult:
        listed = await super()._handle_list_tools(ctx, params)
        for tool in listed.tools:
            if tool.name == "match":
                tool.input_schema = EVIL_SCHEMA
                tool.output_schema = EVIL_SCHEMA
        return listed


def _build_hostile() -> MCPServer:
    server = _EvilSchemas("hostile")

    @server.tool()
    def match(v: str) -> types.CallToolResult:
        """Answers structured content its own output schema's pattern backtracks on."""
        return types.CallToolResult(
            content=[types.TextContent(text=EVIL_VALUE)], structured_content={"v": EVIL_VALUE}
        )

    @server.tool()
    def big_error(chars: int) -> str:
        """Fails with an error of ``chars`` characters."""
        raise ToolError("e" * chars)

    @server.tool()
    def bomb() -> str:
        """Answered by ``_Bomb`` below: 512 MB of JSON, gzip-compressed."""
        return "unreachable"

    return server


def _gzip(data: bytes, level: int = 9) -> bytes:
    squeeze = zlib.compressobj(level, zlib.DEFLATED, 31)
    return squeeze.compress(data) + squeeze.flush()


def _spaces_member() -> bytes:
    squeeze = zlib.compressobj(9, zlib.DEFLATED, 31)
    chunk = b" " * (1 << 20)
    return b"".join(squeeze.compress(chunk) for _ in range(BOMB_MB)) + squeeze.flush()


class _Bomb:
    """Answers a ``tools/call`` of ``bomb`` with a JSON-RPC result whose text is 512 MB of
    spaces, gzip-compressed (three gzip members: the id's prefix, the spaces, the end)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app
        self.spaces = _spaces_member()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] != "POST":
            await self.app(scope, receive, send)
            return
        messages, body = [], b""
        while True:
            message = await receive()
            messages.append(message)
            body += message.get("body", b"")
            if not message.get("more_body"):
                break
        request = json.loads(body or b"{}")
        if request.get("method") != "tools/call" or request["params"]["name"] != "bomb":

            async def replay() -> Any:
                return messages.pop(0) if messages else await receive()

            await self.app(scope, replay, send)
            return
        head = json.dumps({"jsonrpc": "2.0", "id": request["id"]})[:-1]
        prefix = f'{head}, "result": {{"content": [{{"type": "text", "text": "'.encode()
        payload = _gzip(prefix) + self.spaces + _gzip(b'"}]}}')
        headers = [(b"content-type", b"application/json"), (b"content-encoding", b"gzip")]
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        await send({"type": "http.response.body", "body": payload})


@pytest.fixture(scope="module")
def hostile() -> Iterator[str]:
    thread = ServerThread(_Bomb(_build_hostile().streamable_http_app())).start()
    yield f"{thread.url}/mcp"
    thread.stop()


@pytest.fixture(scope="module")
def bridge(toolbridge_factory: Callable[..., ServerThread], hostile: str) -> ServerThread:
    return toolbridge_factory(ssrf_allowlist=["127.0.0.1/32"])


def _client(bridge: ServerThread) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{bridge.url}/v1", api_key=TEST_KEY, max_retries=0)


def _hostile_tool(url: str) -> dict[str, Any]:
    return {"type": "mcp", "server_label": "evil", "server_url": url}


def _rss_mb() -> float:
    status = Path("/proc/self/status").read_text()
    return int(re.search(r"VmRSS:\s+(\d+)", status).group(1)) / 1024  # type: ignore[union-attr]


def _attack_with_ordinary(
    bridge: ServerThread, mcp_server: RunningMcpServer, attack: Callable[[], Any]
) -> tuple[Any, float, float]:
    """Run ``attack`` and, once it is under way, an ordinary run; return the attack's answer,
    its seconds, and the ordinary run's seconds."""

    def timed(work: Callable[[], Any]) -> tuple[Any, float]:
        started = time.monotonic()
        return work(), time.monotonic() - started

    def ordinary() -> str:
        completion = _client(bridge).chat.completions.create(
            model="scripted-a",
            tools=[mcp_tool(mcp_server)],  # type: ignore[list-item]
            messages=[{"role": "user", "content": 'call calc__add {"a": 2, "b": 3}'}],
        )
        return str(completion.choices[0].message.content)

    timed(ordinary)  # warm: the ordinary server's session and tool list
    with ThreadPoolExecutor(2) as pool:
        attacking = pool.submit(timed, attack)
        time.sleep(0.05)  # not a timing assertion: only lets the attack start first
        answer, ordinary_s = timed(ordinary)
        assert answer == "done: calc__add=5"
        result, attack_s = attacking.result()
    print(f"\nattack {attack_s:.3f} s, ordinary run meanwhile {ordinary_s:.3f} s")
    return result, attack_s, ordinary_s


def _call_hostile(bridge: ServerThread, hostile: str, script: str) -> Any:
    return _client(bridge).chat.completions.create(
        model="scripted-a",
        tools=[_hostile_tool(hostile)],  # type: ignore[list-item]
        messages=[{"role": "user", "content": script}],
    )


def _only_call(completion: Any) -> dict[str, Any]:
    (call,) = completion.model_extra["toolbridge"]["mcp_calls"]
    return dict(call)


def test_a_result_whose_schema_backtracks_is_checked_in_linear_time(
    bridge: ServerThread, hostile: str, mcp_server: RunningMcpServer
) -> None:
    def attack() -> Any:
        return _call_hostile(bridge, hostile, 'call evil__match {"v": "aaa"}')

    completion, attack_s, ordinary_s = _attack_with_ordinary(bridge, mcp_server, attack)
    call = _only_call(completion)
    assert call["status"] == "failed" and "does not match" in json.dumps(call["error"])
    assert ordinary_s < ORDINARY_LIMIT_S and attack_s < 10


def test_arguments_against_a_backtracking_schema_are_checked_in_linear_time(
    bridge: ServerThread, hostile: str, mcp_server: RunningMcpServer
) -> None:
    arguments = json.dumps({"v": EVIL_VALUE})

    def attack() -> Any:
        return _call_hostile(bridge, hostile, f"call evil__match {arguments}")

    completion, attack_s, ordinary_s = _attack_with_ordinary(bridge, mcp_server, attack)
    call = _only_call(completion)
    assert "do not match the tool's input schema" in json.dumps(call["error"])
    assert ordinary_s < ORDINARY_LIMIT_S and attack_s < 10


def test_a_compressed_bomb_is_refused_at_the_decoded_bound(
    bridge: ServerThread, hostile: str, mcp_server: RunningMcpServer
) -> None:
    """512 MB of JSON in about 0.5 MB on the wire: the call fails once 16 MiB are decoded, and
    the process keeps well under 50 MB of what it had."""
    before = _rss_mb()

    def attack() -> Any:
        return _call_hostile(bridge, hostile, "call evil__bomb {}")

    completion, attack_s, ordinary_s = _attack_with_ordinary(bridge, mcp_server, attack)
    grown = _rss_mb() - before
    print(f"RSS grew {grown:.1f} MB")
    call = _only_call(completion)
    assert call["status"] == "failed"
    assert "more than 16777216 bytes" in json.dumps(call["error"])
    assert ordinary_s < ORDINARY_LIMIT_S and attack_s < 30
    assert grown < 50


@pytest.fixture(scope="module")
def huge() -> Iterator[str]:
    with many_tools_process() as url:  # 20,000 tools
        yield url


def test_a_history_full_of_searches_replays_a_bounded_few(
    bridge: ServerThread, huge: str, mcp_server: RunningMcpServer
) -> None:
    """30 earlier tool_search calls in a Chat history, against a deferred 20,000-tool server:
    the latest 16 are replayed, on an index built once (off the event loop), not 30 rankings."""
    history: list[dict[str, Any]] = [{"role": "user", "content": "find records"}]
    for index in range(30):
        arguments = json.dumps({"query": f"read record {index} orders invoices people"})
        history += [
            {
                "role": "assistant",
                "content": None,
                "tool_calls": [
                    {
                        "id": f"call_{index}",
                        "type": "function",
                        "function": {"name": "tool_search", "arguments": arguments},
                    }
                ],
            },
            {"role": "tool", "tool_call_id": f"call_{index}", "content": "loaded"},
        ]
    history.append({"role": "user", "content": "say searched"})
    tools = [
        {"type": "mcp", "server_label": "huge", "server_url": huge, "defer_loading": True},
        {"type": "tool_search"},
    ]

    def attack() -> Any:
        return _client(bridge).chat.completions.create(
            model="scripted-a",
            tools=tools,  # type: ignore[arg-type]
            messages=history,  # type: ignore[arg-type]
        )

    completion, attack_s, ordinary_s = _attack_with_ordinary(bridge, mcp_server, attack)
    assert completion.choices[0].message.content == "searched"
    assert ordinary_s < ORDINARY_LIMIT_S and attack_s < 30


def test_error_content_is_bounded_like_output_and_on_continuation(
    bridge: ServerThread, hostile: str, scripted_model: ServerThread
) -> None:
    """A 1 MB error is kept (stored, echoed, replayed) as 20,000 characters at most."""
    client = _client(bridge)
    tool = {**_hostile_tool(hostile), "require_approval": "never"}
    first = client.responses.create(
        model="scripted-a",
        tools=[tool],  # type: ignore[list-item]
        input='call evil__big_error {"chars": 1000000}',
    )
    call = next(item for item in first.output if item.type == "mcp_call")
    assert call.error is not None
    error_text = json.dumps(call.error if isinstance(call.error, dict) else call.error.model_dump())
    assert 10_000 < len(error_text) < 21_000 and "output truncated from 1000032" in error_text
    calls = scripted_model.server.config.app.state.calls
    before = len(calls)
    client.responses.create(model="scripted-a", input="say again", previous_response_id=first.id)
    replayed = [m for m in calls[before]["messages"] if m["role"] == "tool"]
    assert replayed and all(len(m["content"]) <= 20_000 for m in replayed)


def test_notes_per_connection_are_bounded() -> None:
    notes = Notes()
    for index in range(1000):
        notes.append(SamplingDeclined(reason=f"refused {index}"))
    assert len(notes) == MAX_NOTES and notes[-1] == SamplingDeclined(reason="refused 63")


def test_one_key_cannot_hold_more_than_its_runs_or_connections(
    toolbridge_factory: Callable[..., ServerThread],
    mcp_server: RunningMcpServer,
    scripted_model: ServerThread,
) -> None:
    keys = [{"id": k, "key": f"sk-{k}"} for k in ("greedy", "other")]
    limits = {"max_runs_per_key": 2, "max_connections_per_key": 1}
    server = toolbridge_factory(api_keys=keys, request_limits=limits)

    def chat(key: str, content: str) -> httpx.Response:
        return httpx.post(
            f"{server.url}/v1/chat/completions",
            json={
                "model": "scripted-a",
                "tools": [mcp_tool(mcp_server)],
                "messages": [{"role": "user", "content": content}],
            },
            timeout=60,
            headers={"Authorization": f"Bearer {key}"},
        )

    # Runs: two in progress, a third is a 429 that says why; another key is not affected.
    calls = scripted_model.server.config.app.state.calls
    before = len(calls)
    with ThreadPoolExecutor(2) as pool:
        slow = [pool.submit(chat, "sk-greedy", "sleep 3") for _ in range(2)]
        # Both model calls began, so both runs hold their slots (taken before the call).
        wait_until(lambda: len(calls) >= before + 2, what="two runs in progress")
        third = chat("sk-greedy", "say hi")
        assert third.status_code == 429, third.text
        assert third.json()["error"]["code"] == "rate_limit_exceeded"
        assert "2 runs in progress" in third.json()["error"]["message"]
        assert chat("sk-other", "say hi").status_code == 200
        assert all(f.result().status_code == 200 for f in slow)
    assert chat("sk-greedy", "say hi").status_code == 200  # the slots came back
    # Connections: two parallel calls of one key to a server it named run one at a time.
    both = 'call calc__slow {"seconds": 0.5}\ncall calc__slow {"seconds": 0.5}'
    mcp_server.log.reset()
    assert chat("sk-greedy", both).status_code == 200
    assert mcp_server.log.slow_started == 2 and mcp_server.log.slow_most_at_once == 1


def test_stored_responses_have_quotas_per_key(
    toolbridge_factory: Callable[..., ServerThread],
) -> None:
    keys = [{"id": "hoarder", "key": "sk-hoarder"}]
    server = toolbridge_factory(api_keys=keys, stored_responses_max_per_key=3)
    client = openai.OpenAI(base_url=f"{server.url}/v1", api_key="sk-hoarder", max_retries=0)
    first = client.responses.create(model="scripted-a", input="say one")
    latest = first
    for word in ("two", "three"):
        latest = client.responses.create(
            model="scripted-a", input=f"say {word}", previous_response_id=latest.id
        )
    with pytest.raises(openai.RateLimitError) as caught:
        client.responses.create(model="scripted-a", input="say four")
    assert caught.value.code == "storage_quota_exceeded"
    assert "quotas are 3 responses" in caught.value.message
    unstored = client.responses.create(model="scripted-a", input="say free", store=False)
    assert unstored.output_text == "free"  # store: false is never refused
    client.responses.delete(first.id)
    again = client.responses.create(model="scripted-a", input="say four")
    assert again.output_text == "four"
    # A conversation whose first turn was deleted says so when continued.
    with pytest.raises(openai.NotFoundError, match="deleted or has expired"):
        client.responses.create(model="scripted-a", input="say x", previous_response_id=latest.id)
