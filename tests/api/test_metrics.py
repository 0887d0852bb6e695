"""GET /metrics: Prometheus text that moves with what toolbridge does."""

from __future__ import annotations

from typing import Any

import httpx
import openai
from prometheus_client.parser import text_string_to_metric_families

from tests.conftest import mcp_tool
from tests.fixtures.mcp_servers import RunningMcpServer
from tests.fixtures.servers import ServerThread


def scrape(toolbridge: ServerThread) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    text = httpx.get(f"{toolbridge.url}/metrics", timeout=30).text
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def test_metrics_count_requests_runs_and_tool_calls(
    toolbridge: ServerThread, client: openai.OpenAI, mcp_server: RunningMcpServer
) -> None:
    before = scrape(toolbridge)
    client.chat.completions.create(
        model="scripted-a",
        tools=[mcp_tool(mcp_server, label="free-text-label")],  # type: ignore[list-item]
        messages=[{"role": "user", "content": 'call free-text-label__echo {"text": "m"}'}],
    )
    client.chat.completions.create(
        model="scripted-a",
        tools=[{"type": "mcp", "server_label": "calc"}],  # type: ignore[list-item]
        messages=[{"role": "user", "content": 'call calc__echo {"text": "m"}'}],
    )
    after = scrape(toolbridge)

    def grew(name: str, **labels: str) -> float:
        key = (name, tuple(sorted(labels.items())))
        return after.get(key, 0.0) - before.get(key, 0.0)

    assert grew("toolbridge_http_requests_total", route="/v1/chat/completions", status="200") == 2
    assert grew("toolbridge_runs_total", reason="stop") == 2
    # A registered server by its label; one a caller named by URL as "caller", whatever label
    # it was given (a caller's free text must not create series).
    assert grew("toolbridge_mcp_tool_calls_total", server="calc", outcome="ok") == 1
    assert grew("toolbridge_mcp_tool_calls_total", server="caller", outcome="ok") == 1
    assert not any("free-text-label" in str(labels) for _, labels in after)
    assert grew("toolbridge_run_model_turns_sum") == 4
    assert grew("toolbridge_budget_holds_total", outcome="settled") == 4
    assert grew("toolbridge_budget_spend_usd_total") > 0


def test_metrics_need_the_token_when_one_is_set(toolbridge_factory: Any) -> None:
    server = toolbridge_factory(metrics_token="scrape-SECRET")
    url = f"{server.url}/metrics"
    assert httpx.get(url, timeout=30).status_code == 401
    wrong = httpx.get(url, timeout=30, headers={"Authorization": "Bearer nope"})
    assert wrong.status_code == 401 and wrong.json()["error"]["code"] == "invalid_api_key"
    right = httpx.get(url, timeout=30, headers={"Authorization": "Bearer scrape-SECRET"})
    assert right.status_code == 200 and "toolbridge_http_requests_total" in right.text
    assert "scrape-SECRET" not in wrong.text


def test_metrics_are_open_without_a_token(toolbridge: ServerThread) -> None:
    """The default: for in-cluster scraping only (README, NetworkPolicy)."""
    assert httpx.get(f"{toolbridge.url}/metrics", timeout=30).status_code == 200
