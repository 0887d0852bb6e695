"""The model client against the scripted model over HTTP, through litellm (no mocks)."""

from __future__ import annotations

import asyncio
import gc
import json
import subprocess
import sys
from typing import Any

import anyio
import orjson
import psutil
import pytest

from app.config import ModelEntry
from app.errors import ModelNotFound, UpstreamModelError
from app.llm.client import (
    MessagesJson,
    ModelCall,
    ModelChunk,
    ModelClient,
    Usage,
    _litellm,
    _price_map,
)
from tests.fixtures.servers import ServerThread


@pytest.fixture(params=[True, False], ids=["direct", "litellm"])
def direct(request: pytest.FixtureRequest) -> bool:
    """Every behaviour holds on both paths: OpenAI-compatible directly, and through litellm."""
    return bool(request.param)


def client_for(
    scripted_model: ServerThread, direct: bool = True, *, retries: int = 0, timeout_s: float = 30
) -> ModelClient:
    entry = ModelEntry(
        model_name="m",
        litellm_params={
            "model": "openai/scripted",
            "api_base": f"{scripted_model.url}/v1",
            "api_key": "k",
        },
        model_info={"input_cost_per_token": 1e-6, "output_cost_per_token": 2e-6},
    )
    client = ModelClient([entry], num_retries=retries, timeout_s=timeout_s, direct=direct)
    assert client.is_direct("m") is direct
    return client


def collect(client: ModelClient, text: str, *, stream: bool) -> list[ModelChunk]:
    call = ModelCall(model="m", messages=[{"role": "user", "content": text}])

    async def go() -> list[ModelChunk]:
        try:
            return [chunk async for chunk in client.complete(call, stream=stream)]
        finally:
            await client.aclose()  # its connections belong to this event loop

    return anyio.run(go)


def test_streamed_and_whole_calls_give_the_same_answer_and_usage(
    scripted_model: ServerThread, direct: bool
) -> None:
    client = client_for(scripted_model, direct)
    whole = collect(client, "say hello there", stream=False)
    streamed = collect(client, "say hello there", stream=True)
    assert "".join(c.text for c in whole) == "".join(c.text for c in streamed) == "hello there"
    usages = [c.usage for c in streamed if c.usage] + [c.usage for c in whole if c.usage]
    assert usages[0] == usages[1] == Usage(prompt_tokens=3, completion_tokens=2)
    assert whole[-1].finish_reason == "stop"


def test_streamed_calls_give_their_connection_back(scripted_model: ServerThread) -> None:
    """A streamed answer is read to its end, ``[DONE]`` and all: its connection is reused
    (three streamed calls, one connection) and its line reader ends in the call (left open,
    the event loop would close it later, in a task of its own: CPU per run)."""
    client = client_for(scripted_model)
    call = ModelCall(model="m", messages=[{"role": "user", "content": "say one two"}])
    port = int(scripted_model.url.rsplit(":", 1)[1])

    def open_to_model() -> set[int]:
        return {
            c.laddr.port
            for c in psutil.Process().net_connections(kind="tcp")
            if c.raddr and c.raddr.port == port and c.status == psutil.CONN_ESTABLISHED
        }

    # Other clients in this process (earlier tests) may hold idle connections to the
    # same model: only the connections opened during this test are this client's.
    earlier = open_to_model()

    tasks: list[str] = []

    def counting(loop: asyncio.AbstractEventLoop, coro: Any, **options: Any) -> asyncio.Task[Any]:
        tasks.append(getattr(coro, "__qualname__", type(coro).__name__))
        return asyncio.Task(coro, loop=loop, **options)

    async def go() -> list[int]:
        asyncio.get_running_loop().set_task_factory(counting)
        seen = []
        try:
            for _ in range(3):
                chunks = [chunk async for chunk in client.complete(call, stream=True)]
                assert "".join(c.text for c in chunks) == "one two"
                gc.collect()  # an async generator left open is finalised now, by a task
                await anyio.sleep(0.05)  # and a closed connection is gone by then
                seen.append(len(open_to_model() - earlier))
        finally:
            await client.aclose()
        return seen

    assert anyio.run(go) == [1, 1, 1]
    assert tasks and not [name for name in tasks if "athrow" in name or "aclose" in name]


def test_prices_cost_and_unknown_models(scripted_model: ServerThread) -> None:
    client = client_for(scripted_model)
    prices = client.prices("m")
    assert prices is not None and (prices.input, prices.output) == (1e-6, 2e-6)
    assert client.cost_usd("m", Usage(prompt_tokens=10, completion_tokens=5)) == pytest.approx(2e-5)
    assert client.prices("nope") is None
    with pytest.raises(ModelNotFound):
        client.check("nope")


@pytest.mark.parametrize("stream", [False, True])
@pytest.mark.parametrize("status", [400, 429, 503])
def test_a_provider_failure_is_translated_once_with_its_status(
    scripted_model: ServerThread, direct: bool, status: int, stream: bool
) -> None:
    with pytest.raises(UpstreamModelError) as caught:
        collect(client_for(scripted_model, direct), f"fail {status}", stream=stream)
    assert caught.value.status == status
    assert caught.value.message.startswith("Model provider error for 'm'")
    assert f"scripted failure {status}" in caught.value.message


def test_tool_calls_arrive_the_same_way(scripted_model: ServerThread, direct: bool) -> None:
    tool = {"type": "function", "function": {"name": "add", "parameters": {"type": "object"}}}
    call = ModelCall(
        model="m", messages=[{"role": "user", "content": 'call add {"a": 1}'}], tools=[tool]
    )
    client = client_for(scripted_model, direct)

    async def go(stream: bool) -> list[ModelChunk]:
        try:
            return [chunk async for chunk in client.complete(call, stream=stream)]
        finally:
            await client.aclose()

    for stream in (False, True):
        chunks = anyio.run(go, stream)
        deltas = [d for c in chunks for d in c.tool_calls]
        assert deltas[0].name == "add" and deltas[0].id
        assert json.loads("".join(d.arguments for d in deltas)) == {"a": 1}
        assert chunks[-1].finish_reason == "tool_calls" or any(
            c.finish_reason == "tool_calls" for c in chunks
        )


@pytest.mark.parametrize("stream", [False, True])
def test_an_unreachable_provider_is_a_503(direct: bool, stream: bool) -> None:
    entry = ModelEntry(
        model_name="m",
        litellm_params={"model": "openai/x", "api_base": "http://127.0.0.1:9/v1", "api_key": "k"},
    )
    client = ModelClient([entry], num_retries=0, timeout_s=5, direct=direct)
    with pytest.raises(UpstreamModelError) as caught:
        collect(client, "hello", stream=stream)
    # litellm calls a refused connection an InternalServerError (500): found under it.
    assert caught.value.status == 503
    assert caught.value.message == (
        "Model provider error for 'm': could not connect (ConnectionRefusedError)"
    )


@pytest.mark.parametrize("stream", [False, True])
def test_a_provider_slower_than_the_timeout_is_a_504(
    scripted_model: ServerThread, direct: bool, stream: bool
) -> None:
    client = client_for(scripted_model, direct, timeout_s=0.5)
    with pytest.raises(UpstreamModelError) as caught:
        collect(client, "sleep 3\nsay late", stream=stream)
    assert caught.value.status == 504
    assert caught.value.message == "Model provider error for 'm': the request timed out"


@pytest.mark.parametrize("retries", [0, 1])
def test_a_failure_a_retry_can_fix_is_retried(
    scripted_model: ServerThread, direct: bool, retries: int
) -> None:
    """The provider fails the first time it is asked (503), then answers: with a retry
    configured the caller never sees the failure; without one, it is reported."""
    text = f"fail 503 once\nsay retried {direct} {retries}"
    client = client_for(scripted_model, direct, retries=retries)
    if retries:
        answer = collect(client, text, stream=False)
        assert "".join(c.text for c in answer) == f"retried {direct} {retries}"
    else:
        with pytest.raises(UpstreamModelError) as caught:
            collect(client, text, stream=False)
        assert caught.value.status == 503
    calls = scripted_model.server.config.app.state.calls
    assert [c["messages"][0]["content"] for c in calls].count(text) == 1 + retries


def test_only_plain_openai_compatible_deployments_skip_litellm() -> None:
    def entry(name: str, **params: str) -> ModelEntry:
        return ModelEntry(model_name=name, litellm_params=params)

    base = {"api_base": "http://model.example/v1", "api_key": "k"}
    client = ModelClient(
        [
            entry("plain", model="openai/a", **base),
            entry("anthropic", model="anthropic/claude", api_key="k"),
            entry("no-base", model="openai/gpt", api_key="k"),
            entry("extra", model="openai/a", api_version="2024-01-01", **base),
            entry("twice", model="openai/a", **base),
            entry("twice", model="openai/b", **base),
        ],
        num_retries=0,
        timeout_s=5,
    )
    assert [n for n in client.names() if client.is_direct(n)] == ["plain"]


@pytest.mark.parametrize("bypassed", [False, True], ids=["proxied", "no_proxy"])
def test_the_direct_path_honours_the_environments_proxy(
    scripted_model: ServerThread, monkeypatch: pytest.MonkeyPatch, bypassed: bool
) -> None:
    """``HTTP_PROXY`` names the scripted model as the proxy: a provider at a host that does
    not exist answers through it; with the host in ``NO_PROXY`` the call goes direct, and fails."""
    host = f"provider-{'bypassed' if bypassed else 'proxied'}.invalid"
    monkeypatch.setenv("HTTP_PROXY", scripted_model.url)
    monkeypatch.setenv("NO_PROXY", host if bypassed else "")
    entry = ModelEntry(
        model_name="m",
        litellm_params={"model": "openai/scripted", "api_base": f"http://{host}/v1"},
    )
    client = ModelClient([entry], num_retries=0, timeout_s=5, direct=True)
    if bypassed:
        with pytest.raises(UpstreamModelError) as caught:
            collect(client, "say hi", stream=False)
        assert caught.value.status == 503
    else:
        assert "".join(c.text for c in collect(client, "say hi", stream=True)) == "hi"


def test_several_deployments_behind_one_name_share_its_calls(
    scripted_model: ServerThread,
) -> None:
    """One name, two deployments: litellm's router (never the direct path) spreads the calls."""
    entries = [
        ModelEntry(
            model_name="m",
            litellm_params={
                "model": f"openai/{deployment}",
                "api_base": f"{scripted_model.url}/v1",
                "api_key": "k",
            },
        )
        for deployment in ("first", "second")
    ]
    client = ModelClient(entries, num_retries=0, timeout_s=30)
    assert not client.is_direct("m")
    call = ModelCall(model="m", messages=[{"role": "user", "content": "say shared"}])

    async def go() -> list[str]:
        try:
            texts = []
            for _ in range(20):  # both unused after 20 shuffles: 2 in a million
                chunks = [chunk async for chunk in client.complete(call, stream=False)]
                texts.append("".join(c.text for c in chunks))
            return texts
        finally:
            await client.aclose()

    calls = scripted_model.server.config.app.state.calls
    before = len(calls)
    assert anyio.run(go) == ["shared"] * 20
    assert {c["model"] for c in calls[before:]} == {"first", "second"}


def test_direct_prices_are_litellms_for_every_name_in_its_map() -> None:
    """A direct model's prices come from litellm's price map read as data: the same answer as
    ``litellm.get_model_info("openai/<name>")``, for every name the map knows."""
    litellm = _litellm()

    def from_litellm(model: str) -> tuple[float, float] | None:
        try:
            info = litellm.get_model_info(model)
        except Exception:  # noqa: BLE001 - litellm raises bare Exception for unknown models
            return None
        return (info.get("input_cost_per_token") or 0.0, info.get("output_cost_per_token") or 0.0)

    names = {key.removeprefix("openai/") for key in _price_map() if key != "sample_spec"}
    assert len(names) > 1000 and "gpt-4o-mini" in names
    for name in sorted(names) + ["not-a-model"]:
        client = ModelClient(
            [
                ModelEntry(
                    model_name="m",
                    litellm_params={"model": f"openai/{name}", "api_base": "http://x/v1"},
                )
            ],
            num_retries=0,
            timeout_s=5,
        )
        assert client.is_direct("m")
        prices = client.prices("m")
        mine = None if prices is None else (prices.input, prices.output)
        assert mine == from_litellm(f"openai/{name}"), name


def test_a_process_whose_models_are_all_direct_never_imports_litellm() -> None:
    """It would cost seconds on the first call that needs a price, and ~100 MB."""
    script = """
import sys
from app.config import ModelEntry
from app.llm.client import ModelClient
entry = ModelEntry(model_name="m", litellm_params={"model": "openai/gpt-4o", "api_base": "http://x/v1"})
client = ModelClient([entry], num_retries=0, timeout_s=5)
assert client.prices("m") is not None and client.prices("m").input > 0
assert "litellm" not in sys.modules, "litellm was imported"
"""
    subprocess.run([sys.executable, "-c", script], check=True, timeout=120)


def test_messages_json_encodes_the_messages_as_they_are_at_each_call() -> None:
    """A run's messages are encoded once and extended call by call; whatever happened to the
    list in between (added to, inserted into, a message replaced, cut short), each call's JSON
    is the messages' own."""
    history: list[dict[str, Any]] = [
        {"role": "system", "content": 'Be brief. «ünïcödé» \u2028 "quoted" \\ back'},
        {"role": "user", "content": "hi", "name": "ann"},
    ]
    encoded = MessagesJson.of(history)

    def sent() -> Any:
        return orjson.loads(orjson.dumps({"messages": encoded.array(history)}))["messages"]

    assert sent() == history
    history.append(
        {
            "role": "assistant",
            "content": None,
            "tool_calls": [
                {"id": "c1", "type": "function", "function": {"name": "f", "arguments": "{}"}}
            ],
        }
    )
    history.append({"role": "tool", "tool_call_id": "c1", "content": "1.5e300"})
    assert sent() == history
    assert sent() == history  # nothing added: the same
    history.insert(1, {"role": "user", "content": "inserted"})
    assert sent() == history
    history[0] = {"role": "system", "content": "replaced"}
    assert sent() == history
    del history[2:]
    assert sent() == history
    assert orjson.dumps(encoded.array(history)) == orjson.dumps(history)
