"""MCP servers sampling our models: choice, limits, policy, and what the caller sees."""

from __future__ import annotations

import json
import time
import uuid
from typing import Any

import openai
import pytest

from tests.conftest import TEST_KEY, mcp_tool
from tests.fixtures.mcp_servers import RunningMcpServer
from tests.fixtures.servers import ServerThread


def summarize(
    hints: list[str] | None = None,
    priorities: dict[str, float] | None = None,
    max_tokens: int = 50,
    prompt: str = "hello there",
) -> str:
    args = {
        "prompt": prompt,
        "hints": hints or [],
        "priorities": priorities or {},
        "max_tokens": max_tokens,
    }
    return f"call {{label}}__summarize {json.dumps(args)}"


def run(client: openai.OpenAI, script: str, label: str = "sampler") -> Any:
    return client.chat.completions.create(
        model="scripted-a",
        tools=[{"type": "mcp", "server_label": label}],  # type: ignore[list-item]
        messages=[{"role": "user", "content": script.replace("{label}", label)}],
    )


def first_call(completion: Any) -> dict[str, Any]:
    return dict(completion.model_extra["toolbridge"]["mcp_calls"][0])


@pytest.mark.parametrize("label", ["sampler", "sampler_legacy"])  # 2026-07-28 and 2025-11-25
@pytest.mark.parametrize(
    ("hints", "priorities", "chosen"),
    [
        (["beta"], None, "scripted-b"),  # alias
        (["scripted-b"], None, "scripted-b"),  # exact name
        (["claude-3-opus"], None, "scripted-b"),  # cross-family map
        (["nothing"], {"speed": 1.0}, "scripted-a"),  # no hint matches: priorities
        (None, {"intelligence": 1.0}, "scripted-b"),
        (None, {"cost": 1.0}, "scripted-a"),
        (None, None, "scripted-a"),  # no preferences: the default
    ],
)
def test_model_choice(
    client: openai.OpenAI,
    label: str,
    hints: list[str] | None,
    priorities: dict[str, float] | None,
    chosen: str,
) -> None:
    completion = run(client, summarize(hints, priorities), label)
    call = first_call(completion)
    assert call["output"] == f"model={chosen} stop=endTurn text=echo({chosen}): hello there"
    note = call["notes"][0]
    assert note["kind"] == "sampling" and note["model"] == chosen
    sampling = completion.usage.model_extra["sampling"]
    assert sampling["requests"] == 1 and sampling["cost_usd"] > 0


def test_max_tokens_is_respected_and_capped(
    client: openai.OpenAI, scripted_model: ServerThread
) -> None:
    calls = scripted_model.server.config.app.state.calls
    for asked, sent in ((30, 30), (5000, 100)):  # respected, and capped by config
        call = first_call(run(client, summarize(max_tokens=asked)))
        assert call["notes"][0]["kind"] == "sampling", call
        sampled = [
            c for c in calls if c["messages"] and c["messages"][0].get("content") == ("Be brief.")
        ]
        assert sampled[-1]["max_tokens"] == sent


def test_sampling_with_tools(client: openai.OpenAI) -> None:
    script = 'call {label}__plan {"prompt": "call lookup {\\"word\\": \\"mcp\\"}"}'
    call = first_call(run(client, script))
    assert call["output"] == "stop=toolUse uses=[\"lookup{'word': 'mcp'}\"]"


def test_sampling_not_allowed_is_not_declared(
    client: openai.OpenAI, mcp_server: RunningMcpServer
) -> None:
    completion = client.chat.completions.create(
        model="scripted-a",
        tools=[mcp_tool(mcp_server)],  # type: ignore[list-item]
        messages=[{"role": "user", "content": summarize().replace("{label}", "calc")}],
    )
    call = first_call(completion)
    assert call["error"] is not None and "sampling" in json.dumps(call["error"]).lower()
    assert completion.usage.model_extra["sampling"]["requests"] == 0


def test_rate_limit_is_shared_and_refusals_are_visible(toolbridge_factory: Any) -> None:
    server = toolbridge_factory(
        sampling={"rate_per_minute": 1, "default_model": "scripted-a"},
        redis_prefix=f"tb-rate-{uuid.uuid4().hex[:8]}:",  # a rerun starts from an empty count
    )
    client = openai.OpenAI(base_url=f"{server.url}/v1", api_key=TEST_KEY, max_retries=0)
    # Both runs must fall in one fixed one-minute window: not in its last ten seconds.
    if time.time() % 60 > 50:
        time.sleep(60 - time.time() % 60)
    window = time.time() // 60
    first = first_call(run(client, summarize()))
    assert first["error"] is None
    second = first_call(run(client, summarize()))
    assert time.time() // 60 == window, "the two runs took over ten seconds"
    assert second["error"] is not None
    assert second["notes"] == [
        {
            "kind": "sampling_refused",
            "reason": ("sampling rate limit reached: 1 requests per minute for this server"),
        }
    ]


def test_per_call_limit(toolbridge_factory: Any) -> None:
    server = toolbridge_factory(sampling={"max_per_tool_call": 0})
    client = openai.OpenAI(base_url=f"{server.url}/v1", api_key=TEST_KEY, max_retries=0)
    call = first_call(run(client, summarize()))
    assert call["notes"][0]["reason"] == "sampling limit reached: 0 requests per tool call"


def test_per_run_limit(toolbridge_factory: Any) -> None:
    server = toolbridge_factory(sampling={"max_per_run": 1, "default_model": "scripted-a"})
    client = openai.OpenAI(base_url=f"{server.url}/v1", api_key=TEST_KEY, max_retries=0)
    script = summarize().replace("{label}", "sampler")
    completion = run(client, f"{script}\n{script}")
    calls = completion.model_extra["toolbridge"]["mcp_calls"]
    # Two parallel calls to one server: each carries the notes of both
    # (see docs/sampling-and-elicitation.md).
    kinds = {note["kind"] for call in calls for note in call["notes"]}
    assert kinds == {"sampling", "sampling_refused"}
    assert [call["error"] is None for call in calls].count(True) == 1


def test_sampling_timeout_is_an_error_answer(toolbridge_factory: Any) -> None:
    server = toolbridge_factory(sampling={"timeout_s": 0.5, "default_model": "scripted-a"})
    client = openai.OpenAI(base_url=f"{server.url}/v1", api_key=TEST_KEY, max_retries=0)
    call = first_call(run(client, summarize(prompt="sleep 3")))
    assert call["notes"] == [
        {"kind": "sampling_refused", "reason": "sampling timed out after 0.5s"}
    ]


def test_registered_server_can_opt_out_of_elicitation(
    toolbridge_factory: Any, mcp_servers: dict[str, RunningMcpServer]
) -> None:
    servers = [{"label": "quiet", "url": mcp_servers["modern"].url, "elicitation": False}]
    server = toolbridge_factory(mcp_servers=servers)
    client = openai.OpenAI(base_url=f"{server.url}/v1", api_key=TEST_KEY, max_retries=0)
    call = first_call(run(client, "call {label}__greet {}", "quiet"))
    assert call["error"] is not None  # the server cannot elicit: the capability is absent
    assert call["notes"] == []


def test_rate_limits_are_per_key_and_per_server_origin(
    toolbridge_factory: Any, mcp_server: RunningMcpServer
) -> None:
    """One key's requests do not use another's allowance, and a server named by URL is one
    bucket whatever its path or query (``?x=N`` once made a fresh bucket)."""
    keys = [{"id": k, "key": f"sk-{k}", "allow_sampling": True} for k in ("a", "b")]
    server = toolbridge_factory(
        api_keys=keys,
        mcp_servers=[{"label": "sampler", "url": mcp_server.url, "sampling": True}],
        sampling={"rate_per_minute": 1, "default_model": "scripted-a"},
        redis_prefix=f"tb-rate-{uuid.uuid4().hex[:8]}:",
    )

    def sampled(key: str, tool: dict[str, Any]) -> bool:
        client = openai.OpenAI(base_url=f"{server.url}/v1", api_key=key, max_retries=0)
        completion = client.chat.completions.create(
            model="scripted-a",
            tools=[tool],  # type: ignore[list-item]
            messages=[
                {"role": "user", "content": summarize().replace("{label}", tool["server_label"])}
            ],
        )
        return first_call(completion)["error"] is None

    by_url = {"type": "mcp", "server_label": "s", "server_url": mcp_server.url}
    if time.time() % 60 > 50:  # every request in one fixed one-minute window
        time.sleep(60 - time.time() % 60)
    window = time.time() // 60
    assert sampled("sk-a", by_url)
    assert not sampled("sk-a", {**by_url, "server_url": f"{mcp_server.url}?x=2"})  # same origin
    assert sampled("sk-b", by_url)  # another key: its own allowance
    assert sampled("sk-a", {"type": "mcp", "server_label": "sampler"})  # another server
    assert time.time() // 60 == window, "the requests took over ten seconds"
