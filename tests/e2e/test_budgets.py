"""Budgets over real runs: refused up front, ended mid-run, sampling refused, and visible."""

from __future__ import annotations

import json
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx
import openai
import pytest

from tests.conftest import TEST_KEY
from tests.fixtures.mcp_servers import RunningMcpServer
from tests.fixtures.servers import ServerThread

KEYS = [
    {"id": "tester", "key": TEST_KEY},
    {"id": "capped", "key": "sk-capped", "budget": {"per_run_usd": 0.005}},
    {"id": "broke", "key": "sk-broke", "budget": {"total_usd": 0}},
    {"id": "thrifty", "key": "sk-thrifty", "budget": {"daily_usd": 5, "monthly_usd": 50}},
]


@pytest.fixture(scope="module")
def budgeted(toolbridge_factory: Any, mcp_servers: dict[str, RunningMcpServer]) -> ServerThread:
    servers = [
        {"label": "calc", "url": mcp_servers["modern"].url},
        {"label": "sampler", "url": mcp_servers["modern"].url, "sampling": True},
        {
            "label": "poor_sampler",
            "url": mcp_servers["modern"].url,
            "sampling": True,
            "sampling_budget_usd": 0.0,
        },
    ]
    return toolbridge_factory(api_keys=KEYS, mcp_servers=servers)


def client_for(server: ServerThread, key: str) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{server.url}/v1", api_key=key, max_retries=0)


def test_a_key_out_of_budget_gets_429_before_the_run(budgeted: ServerThread) -> None:
    with pytest.raises(openai.RateLimitError) as caught:
        client_for(budgeted, "sk-broke").chat.completions.create(
            model="scripted-a", messages=[{"role": "user", "content": "hi"}]
        )
    assert caught.value.status_code == 429 and caught.value.code == "insufficient_quota"


def test_running_out_mid_run_ends_it_incomplete(budgeted: ServerThread) -> None:
    # The worst case of one turn (4096 output tokens at $2e-6) is over the $0.005 run cap.
    completion = client_for(budgeted, "sk-capped").chat.completions.create(
        model="scripted-a", messages=[{"role": "user", "content": "hi"}]
    )
    assert completion.choices[0].finish_reason == "length"
    details = completion.model_extra["toolbridge"]["incomplete_details"]
    assert details["reason"] == "budget_exceeded" and "run:" in details["message"]
    response = client_for(budgeted, "sk-capped").responses.create(model="scripted-a", input="hi")
    assert response.status == "incomplete"
    assert response.incomplete_details.reason == "budget_exceeded"


def test_sampling_over_budget_is_refused_and_the_run_goes_on(budgeted: ServerThread) -> None:
    args = {"prompt": "p", "hints": [], "priorities": {}, "max_tokens": 20}
    completion = client_for(budgeted, TEST_KEY).chat.completions.create(
        model="scripted-a",
        tools=[{"type": "mcp", "server_label": "poor_sampler"}],  # type: ignore[list-item]
        messages=[{"role": "user", "content": f"call poor_sampler__summarize {json.dumps(args)}"}],
    )
    call = completion.model_extra["toolbridge"]["mcp_calls"][0]
    assert call["notes"][0]["kind"] == "sampling_refused"
    assert call["notes"][0]["reason"].startswith("over budget")
    assert completion.choices[0].finish_reason == "stop"


def test_spend_is_visible_per_scope(budgeted: ServerThread) -> None:
    client = client_for(budgeted, "sk-thrifty")
    args = {"prompt": "p", "hints": [], "priorities": {}, "max_tokens": 20}
    completion = client.chat.completions.create(
        model="scripted-a",
        tools=[{"type": "mcp", "server_label": "sampler"}],  # type: ignore[list-item]
        messages=[{"role": "user", "content": f"call sampler__summarize {json.dumps(args)}"}],
    )
    sampling = completion.usage.model_extra["sampling"]
    assert sampling["requests"] == 1 and sampling["cost_usd"] > 0
    view = httpx.get(
        f"{budgeted.url}/v1/budget", timeout=30, headers={"Authorization": "Bearer sk-thrifty"}
    ).json()
    total, day, month = view["scopes"]
    assert total["scope"] == "key:thrifty:total" and total["limit_usd"] is None
    assert day["limit_usd"] == 5 and month["limit_usd"] == 50
    assert total["held_usd"] == 0 and total["spent_usd"] > sampling["cost_usd"]  # + two turns
    assert day["remaining_usd"] == pytest.approx(5 - day["spent_usd"])


def test_fifty_concurrent_runs_never_overspend_the_key(
    toolbridge_factory: Any, mcp_servers: dict[str, RunningMcpServer]
) -> None:
    """Each run holds about $0.008 per model turn; together they would overspend $0.1."""
    keys = [{"id": "shared", "key": "sk-shared", "budget": {"total_usd": 0.1}}]
    servers = [{"label": "sampler", "url": mcp_servers["modern"].url, "sampling": True}]
    server = toolbridge_factory(api_keys=keys, mcp_servers=servers)
    args = {"prompt": "p", "hints": [], "priorities": {}, "max_tokens": 20}
    body = {
        "model": "scripted-a",
        "tools": [{"type": "mcp", "server_label": "sampler"}],
        "messages": [{"role": "user", "content": f"call sampler__summarize {json.dumps(args)}"}],
    }

    def one_run(_: int) -> int:
        return httpx.post(
            f"{server.url}/v1/chat/completions",
            json=body,
            timeout=60,
            headers={"Authorization": "Bearer sk-shared"},
        ).status_code

    with ThreadPoolExecutor(max_workers=50) as pool:
        statuses = list(pool.map(one_run, range(50)))
    assert set(statuses) <= {200, 429} and 200 in statuses
    view = httpx.get(
        f"{server.url}/v1/budget", timeout=30, headers={"Authorization": "Bearer sk-shared"}
    ).json()
    total = view["scopes"][0]
    assert 0 < total["spent_usd"] <= 0.1
    assert total["held_usd"] == 0  # every hold settled or released
