"""GET /metrics: Prometheus text that moves with what toolbridge does."""

from __future__ import annotations

import uuid
from typing import Any

import anyio
import httpx
import openai
import pytest
from prometheus_client import REGISTRY
from prometheus_client.parser import text_string_to_metric_families
from redis.exceptions import RedisError

from app.budget.exporter import export_once
from app.budget.ledger import Estimate, Ledger
from app.budget.scopes import key_scopes
from app.config import ApiKeyConfig, KeyBudget
from app.errors import StoreUnavailable
from app.principal import Principal
from app.store.errors import store_errors
from tests.conftest import mcp_tool, redis_client
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
    assert grew("toolbridge_budget_spend_usd_total", key="tester") > 0
    assert grew("toolbridge_budget_holds_in_flight") == 0  # every hold settled


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
    """The default: for in-cluster scraping only (docs/security.md, NetworkPolicy)."""
    assert httpx.get(f"{toolbridge.url}/metrics", timeout=30).status_code == 200


def test_budget_refusals_are_counted_by_key(
    toolbridge_factory: Any,
) -> None:
    server = toolbridge_factory(
        api_keys=[ApiKeyConfig(id="broke", key="sk-broke", budget=KeyBudget(total_usd=0))]
    )
    broke = openai.OpenAI(base_url=f"{server.url}/v1", api_key="sk-broke", max_retries=0)
    before = scrape(server)
    with pytest.raises(openai.RateLimitError):
        broke.chat.completions.create(
            model="scripted-a", messages=[{"role": "user", "content": "say x"}]
        )
    after = scrape(server)
    key = ("toolbridge_budget_refusals_total", (("key", "broke"),))
    assert after.get(key, 0) - before.get(key, 0) == 1


def test_a_failed_redis_operation_is_counted_by_the_state_it_was_for() -> None:
    def count() -> float:
        value = REGISTRY.get_sample_value("toolbridge_redis_errors_total", {"store": "Budgets"})
        return value or 0.0

    before = count()
    with pytest.raises(StoreUnavailable), store_errors("Budgets"):
        raise RedisError("connection refused")
    assert count() == before + 1


def test_the_budget_gauge_reads_each_limited_period_from_redis(redis_url: str) -> None:
    async def scenario() -> None:
        redis = await redis_client(redis_url)
        try:
            ledger = Ledger(redis, f"tb-gauge-{uuid.uuid4().hex[:6]}:", hold_ttl_s=60)
            principal = Principal(key_id="gauged", budget=KeyBudget(total_usd=10, daily_usd=2))
            hold = await ledger.reserve(key_scopes(principal), Estimate(input_usd=0.5))
            hold.cost_usd = 0.5
            await ledger.finish(hold)
            await ledger.reserve(key_scopes(principal), Estimate(input_usd=0.5))  # held
            await export_once(ledger, [principal])
        finally:
            await redis.aclose()

    anyio.run(scenario)

    def ratio(period: str) -> float | None:
        return REGISTRY.get_sample_value(
            "toolbridge_budget_used_ratio", {"key": "gauged", "period": period}
        )

    assert ratio("total") == pytest.approx(0.1)  # 0.5 spent + 0.5 held of 10
    assert ratio("day") == pytest.approx(0.5)
    assert ratio("month") is None  # no monthly limit: no series
