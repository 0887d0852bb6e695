"""Misbehaving neighbours: each fault has a clear outcome and nothing is lost."""

from __future__ import annotations

import json
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import anyio
import httpx
import openai
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response, StreamingResponse
from starlette.routing import Route
from starlette.types import ASGIApp, Receive, Scope, Send

from app.store.embedded import free_port, start_embedded_redis
from tests.conftest import TEST_KEY, mcp_tool
from tests.fixtures.mcp_servers import RunningMcpServer, build_test_server
from tests.fixtures.servers import ServerThread
from tests.fixtures.waiting import wait_until


async def garbage(request: Request) -> Response:
    return PlainTextResponse("this is not JSON-RPC", status_code=200)


async def error500(request: Request) -> Response:
    return PlainTextResponse("upstream exploded", status_code=500)


async def hang(request: Request) -> Response:
    await anyio.sleep(30)
    return PlainTextResponse("too late")


async def close_mid_stream(request: Request) -> Response:
    async def body() -> Iterator[bytes]:
        yield b'event: message\ndata: {"jsonrpc": "2.0", "id"'
        raise RuntimeError("connection dropped")  # uvicorn closes the connection mid-stream

    return StreamingResponse(body(), media_type="text/event-stream")  # type: ignore[arg-type]


@pytest.fixture(scope="module")
def broken_servers() -> Iterator[str]:
    app = Starlette(
        routes=[
            Route(f"/{name}", handler, methods=["GET", "POST", "DELETE"])
            for name, handler in (
                ("garbage", garbage),
                ("error500", error500),
                ("hang", hang),
                ("close", close_mid_stream),
            )
        ]
    )
    server = ServerThread(app).start()
    yield server.url
    server.stop()


@pytest.mark.parametrize(
    ("path", "reason"),
    [
        ("garbage", ""),
        ("error500", "MCP error"),
        ("hang", "timed out"),
        ("close", ""),
    ],
)
def test_server_that_cannot_be_listed_is_424(
    toolbridge_factory: Any, broken_servers: str, path: str, reason: str
) -> None:
    server = toolbridge_factory(limits={"list_timeout_s": 1.0})
    client = openai.OpenAI(base_url=f"{server.url}/v1", api_key=TEST_KEY, max_retries=0)
    with pytest.raises(openai.APIStatusError) as caught:
        client.chat.completions.create(
            model="scripted-a",
            messages=[{"role": "user", "content": "hi"}],
            tools=[
                {
                    "type": "mcp",
                    "server_label": "bad",  # type: ignore[list-item]
                    "server_url": f"{broken_servers}/{path}",
                }
            ],
        )
    assert caught.value.status_code == 424
    assert "'bad'" in caught.value.message and reason in caught.value.message


def failing_calls(app: ASGIApp) -> ASGIApp:
    """A real MCP server whose tools/call for 'add' answers 500 and for 'echo' garbage."""

    async def wrapped(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] != "POST":
            await app(scope, receive, send)
            return
        message = await receive()
        payload = json.loads(message.get("body") or b"{}")
        name = (payload.get("params") or {}).get("name") if isinstance(payload, dict) else None
        if payload.get("method") == "tools/call" and name in ("add", "echo"):
            status, body = (500, b"boom") if name == "add" else (200, b"garbage")
            await send(
                {
                    "type": "http.response.start",
                    "status": status,
                    "headers": [(b"content-type", b"application/json")],
                }
            )
            await send({"type": "http.response.body", "body": body})
            return
        sent = False

        async def replay() -> Any:
            nonlocal sent
            if not sent:
                sent = True
                return message
            return await receive()

        await app(scope, replay, send)

    return wrapped


def test_failing_tool_calls_reach_the_model_and_the_loop_goes_on(client: openai.OpenAI) -> None:
    server = ServerThread(failing_calls(build_test_server().streamable_http_app())).start()
    try:
        completion = client.chat.completions.create(
            model="scripted-a",
            tools=[
                {
                    "type": "mcp",
                    "server_label": "calc",  # type: ignore[arg-type]
                    "server_url": f"{server.url}/mcp",
                }
            ],
            messages=[
                {
                    "role": "user",
                    "content": (
                        'call calc__add {"a": 1, "b": 2}\ncall calc__echo {"text": "x"}\n'
                        'call calc__big {"size": 3}'
                    ),
                }
            ],
        )
    finally:
        server.stop()
    calls = completion.model_extra["toolbridge"]["mcp_calls"]
    assert [c["error"] is not None for c in calls] == [True, True, False]
    assert calls[2]["output"] == "xxx"
    assert completion.choices[0].finish_reason == "stop"


def test_model_failures_are_retried_then_reported(
    toolbridge_factory: Any, scripted_model: ServerThread
) -> None:
    server = toolbridge_factory(model_num_retries=2)
    calls = scripted_model.server.config.app.state.calls
    before = len(calls)
    response = httpx.post(
        f"{server.url}/v1/chat/completions",
        timeout=60,
        headers={"Authorization": f"Bearer {TEST_KEY}"},
        json={"model": "scripted-a", "messages": [{"role": "user", "content": "fail 503"}]},
    )
    assert response.status_code == 503
    assert len(calls) - before == 3  # the first try and two retries
    assert "scripted failure 503" in response.json()["error"]["message"]


def test_redis_outage_fails_clearly_and_recovers(
    toolbridge_factory: Any, tmp_path: Path, mcp_server: RunningMcpServer
) -> None:
    port = free_port()
    # Persisted, as an operator's Redis is: what was stored before the outage is there after.
    redis_server = start_embedded_redis(tmp_path / "r", port=port, persist=True)
    server = toolbridge_factory(redis_url=redis_server.url)
    client = openai.OpenAI(base_url=f"{server.url}/v1", api_key=TEST_KEY, max_retries=0)
    fail_open = toolbridge_factory(redis_url=redis_server.url, budget={"fail_open": True})
    open_client = openai.OpenAI(base_url=f"{fail_open.url}/v1", api_key=TEST_KEY, max_retries=0)
    stored = client.responses.create(model="scripted-a", input="say kept")
    redis_server.stop()
    try:
        assert httpx.get(f"{server.url}/readyz", timeout=30).status_code == 503
        with pytest.raises(openai.APIStatusError) as caught:
            client.responses.create(model="scripted-a", input="say lost?")
        assert caught.value.status_code == 503
        assert caught.value.code == "store_unavailable"
        # Model calls are budgeted: they fail closed...
        chat: dict[str, Any] = {
            "model": "scripted-a",
            "tools": [mcp_tool(mcp_server)],
            "messages": [{"role": "user", "content": 'call calc__echo {"text": "up"}'}],
        }
        with pytest.raises(openai.APIStatusError) as caught:
            client.chat.completions.create(**chat)
        assert caught.value.status_code == 503
        # ...unless the operator chose to fail open: then they run, and the caches just miss.
        completion = open_client.chat.completions.create(**chat)
        assert completion.choices[0].message.content == "done: calc__echo=up"
    finally:
        redis_server = start_embedded_redis(tmp_path / "r", port=port, persist=True)
    try:
        wait_until(
            lambda: httpx.get(f"{server.url}/readyz", timeout=30).status_code == 200,
            what="toolbridge ready again",
        )
        again = client.responses.create(model="scripted-a", input="say back")
        assert client.responses.retrieve(again.id).output_text == "back"
        # The response stored before the outage is retrieved after it, and continues.
        assert client.responses.retrieve(stored.id).output_text == "kept"
        follow = client.responses.create(
            model="scripted-a", input="say onward", previous_response_id=stored.id
        )
        assert follow.output_text == "onward"
    finally:
        redis_server.stop()


class _LosingRedis:
    """A toolbridge with a budgeted key on a Redis of its own, which a test stops mid-run and
    starts again (persisted: what Redis held before is there after)."""

    KEY = "sk-payer"

    def __init__(self, toolbridge_factory: Any, folder: Path) -> None:
        self.folder, self.port = folder, free_port()
        self.redis = start_embedded_redis(folder, port=self.port, persist=True)
        keys = [{"id": "payer", "key": self.KEY, "budget": {"total_usd": 5}}]
        self.server = toolbridge_factory(
            redis_url=self.redis.url, api_keys=keys, budget={"hold_ttl_s": 3}
        )
        self.client = openai.OpenAI(
            base_url=f"{self.server.url}/v1", api_key=self.KEY, max_retries=0
        )

    def held_usd(self) -> float:
        view = httpx.get(
            f"{self.server.url}/v1/budget",
            headers={"Authorization": f"Bearer {self.KEY}"},
            timeout=30,
        ).json()
        return float(view["scopes"][0]["held_usd"])

    def lose_during(self, script: str, tools: list[Any]) -> openai.APIStatusError:
        """Send ``script`` (its model call sleeps), stop Redis while the model call holds
        budget, and return the error the caller got."""
        chat = {
            "model": "scripted-a",
            "tools": tools,
            "messages": [{"role": "user", "content": script}],
        }
        with ThreadPoolExecutor(1) as pool:
            pending = pool.submit(lambda: self.client.chat.completions.create(**chat))
            wait_until(lambda: self.held_usd() > 0, what="the model call holding budget")
            self.redis.stop()
            with pytest.raises(openai.APIStatusError) as caught:
                pending.result()
        return caught.value

    def recover(self) -> None:
        """Redis back; the hold nobody could settle or release lapses by itself."""
        self.redis = start_embedded_redis(self.folder, port=self.port, persist=True)
        wait_until(lambda: self.held_usd() == 0, 60, "the orphaned hold lapsed")


def test_redis_lost_before_a_turn_is_settled_stops_the_tools_it_asked_for(
    toolbridge_factory: Any, tmp_path: Path, mcp_server: RunningMcpServer
) -> None:
    """The model call ends while Redis is gone: its settlement fails, so the tool calls it
    asked for are stopped (or never start), and the run fails with 503, not a quiet answer."""
    bridge = _LosingRedis(toolbridge_factory, tmp_path / "r")
    mcp_server.log.reset()
    try:
        error = bridge.lose_during(
            'sleep 1.5\ncall calc__slow {"seconds": 30}', [mcp_tool(mcp_server)]
        )
        assert error.status_code == 503 and error.code == "store_unavailable"
        wait_until(
            lambda: mcp_server.log.cancelled == mcp_server.log.slow_started,
            what="every tool call that started was cancelled",
        )
        bridge.recover()
    finally:
        bridge.redis.stop()


def test_a_failed_release_after_a_failed_model_call_keeps_the_models_error(
    toolbridge_factory: Any, tmp_path: Path
) -> None:
    """The model call fails while Redis is gone: the hold cannot be released, and the caller
    still learns what failed first, the model; the hold lapses by itself."""
    bridge = _LosingRedis(toolbridge_factory, tmp_path / "r")
    try:
        error = bridge.lose_during("sleep 1.5\nfail 500", [])
        assert error.status_code == 502, error.body
        assert "scripted failure 500" in error.message
        bridge.recover()
    finally:
        bridge.redis.stop()
