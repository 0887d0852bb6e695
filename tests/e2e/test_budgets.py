"""Budgets over real runs: refused up front, ended mid-run, sampling refused, and visible."""

from __future__ import annotations

import json
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx
import openai
import pytest
import redis

from app.budget.ledger import ANSWERED_S
from tests.conftest import TEST_KEY, sync_redis
from tests.fixtures.mcp_servers import RunningMcpServer
from tests.fixtures.servers import ServerThread
from tests.fixtures.waiting import wait_until

KEYS = [
    {"id": "tester", "key": TEST_KEY},
    {"id": "capped", "key": "sk-capped", "budget": {"per_run_usd": 0.00001}},
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


def test_a_run_cap_that_cannot_pay_for_the_first_turn_is_429(budgeted: ServerThread) -> None:
    """Nothing was done, so nothing is answered: a 429 naming the scope and what it has left,
    never a 200 with an empty answer (on either endpoint, streamed or not)."""
    # The run cap ($0.00001) cannot pay for the first turn's input (~100 bytes at $1e-6).
    client = client_for(budgeted, "sk-capped")
    attempts = [
        lambda: client.chat.completions.create(
            model="scripted-a", messages=[{"role": "user", "content": "hi"}]
        ),
        lambda: client.chat.completions.create(
            model="scripted-a", messages=[{"role": "user", "content": "hi"}], stream=True
        ),
        lambda: client.responses.create(model="scripted-a", input="hi"),
    ]
    for attempt in attempts:
        with pytest.raises(openai.RateLimitError) as caught:
            attempt()
        assert caught.value.code == "insufficient_quota"
        assert "scope 'run:" in caught.value.message and "left" in caught.value.message


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


def budget_view(server: ServerThread, key: str) -> dict[str, Any]:
    """The key's total scope from GET /v1/budget."""
    view = httpx.get(
        f"{server.url}/v1/budget", timeout=30, headers={"Authorization": f"Bearer {key}"}
    ).json()
    return dict(view["scopes"][0])


def run_cost(server: ServerThread, key: str, content: str) -> float:
    """What one run of ``content`` costs, measured on an unlimited key."""
    before = budget_view(server, key)["spent_usd"]
    client_for(server, key).chat.completions.create(
        model="scripted-a", messages=[{"role": "user", "content": content}]
    )
    return budget_view(server, key)["spent_usd"] - before


def with_budgets(
    toolbridge_factory: Any, content: str, runs: float, *key_ids: str
) -> tuple[ServerThread, float]:
    """A toolbridge whose keys ``sk-<id>`` each have a budget that pays for ``runs`` runs of
    ``content`` (measured first, on an unlimited key); and that budget."""
    meter = toolbridge_factory(api_keys=[{"id": "meter", "key": "sk-meter"}])
    budget = runs * run_cost(meter, "sk-meter", content)
    meter.stop()
    keys = [{"id": k, "key": f"sk-{k}", "budget": {"total_usd": budget}} for k in key_ids]
    return toolbridge_factory(api_keys=keys), budget


def test_an_answer_costing_ten_times_what_is_left_is_cut_short(toolbridge_factory: Any) -> None:
    """Output is capped to what the hold pays for, so spend stays within the limit."""
    content = "words 1000"
    server, left = with_budgets(toolbridge_factory, content, 0.1, "short-chat", "short-resp")

    completion = client_for(server, "sk-short-chat").chat.completions.create(
        model="scripted-a", messages=[{"role": "user", "content": content}]
    )
    assert completion.choices[0].finish_reason == "length"
    details = completion.model_extra["toolbridge"]["incomplete_details"]
    assert details["reason"] == "budget_exceeded"
    words = completion.choices[0].message.content.split()
    assert 16 <= len(words) < 1000 and words[0] == "w0"
    spent = budget_view(server, "sk-short-chat")
    assert 0 < spent["spent_usd"] <= left and spent["held_usd"] == 0

    response = client_for(server, "sk-short-resp").responses.create(
        model="scripted-a", input=content
    )
    assert response.status == "incomplete"
    assert response.incomplete_details.reason == "budget_exceeded"
    assert 16 <= len(response.output_text.split()) < 1000
    assert 0 < budget_view(server, "sk-short-resp")["spent_usd"] <= left


def test_runs_one_at_a_time_are_refused_only_when_a_call_cannot_be_paid(
    toolbridge_factory: Any,
) -> None:
    """A budget that pays for 50 runs serves at least 45 of them in full."""
    content = "words 20"
    server, budget = with_budgets(toolbridge_factory, content, 50, "fifty")
    served = 0
    for _ in range(55):
        try:
            completion = client_for(server, "sk-fifty").chat.completions.create(
                model="scripted-a", messages=[{"role": "user", "content": content}]
            )
        except openai.RateLimitError:
            break
        served += completion.choices[0].finish_reason == "stop"
    total = budget_view(server, "sk-fifty")
    print(f"runs served in full from a budget for 50: {served}")
    assert 45 <= served <= 50
    assert total["spent_usd"] <= budget + 1e-12 and total["held_usd"] == 0


def test_fifty_concurrent_runs_against_a_budget_for_ten(toolbridge_factory: Any) -> None:
    content = "words 20"
    server, budget = with_budgets(toolbridge_factory, content, 10, "ten")
    body = {"model": "scripted-a", "messages": [{"role": "user", "content": content}]}

    def one_run(_: int) -> str:
        answer = httpx.post(
            f"{server.url}/v1/chat/completions",
            json=body,
            timeout=60,
            headers={"Authorization": "Bearer sk-ten"},
        )
        if answer.status_code != 200:
            return str(answer.status_code)
        return str(answer.json()["choices"][0]["finish_reason"])

    with ThreadPoolExecutor(max_workers=50) as pool:
        outcomes = list(pool.map(one_run, range(50)))
    print("50 concurrent runs, budget for 10:", {o: outcomes.count(o) for o in set(outcomes)})
    assert set(outcomes) <= {"stop", "length", "429"} and "stop" in outcomes
    total = budget_view(server, "sk-ten")
    assert 0 < total["spent_usd"] <= budget + 1e-12
    assert total["held_usd"] == 0


def test_a_provider_that_ignores_max_tokens_is_charged_and_reported(
    toolbridge_factory: Any, caplog: pytest.LogCaptureFixture
) -> None:
    content = "overrun\nwords 1000"
    server, budget = with_budgets(toolbridge_factory, content, 0.1, "over")
    with caplog.at_level("ERROR", logger="app.budget.ledger"):
        completion = client_for(server, "sk-over").chat.completions.create(
            model="scripted-a", messages=[{"role": "user", "content": content}]
        )
    assert len(completion.choices[0].message.content.split()) == 1000  # nothing was cut
    assert budget_view(server, "sk-over")["spent_usd"] > budget  # charged in full
    assert any("more output than its max_tokens" in r.getMessage() for r in caplog.records)
    metrics = httpx.get(f"{server.url}/metrics", timeout=30).text
    assert 'toolbridge_budget_output_overruns_total{model="scripted-a"}' in metrics


def test_a_turn_is_settled_while_its_tools_run_and_every_turn_before_the_answer(
    budgeted: ServerThread,
) -> None:
    """The first turn's hold is settled to its cost while the slow tool it asked for runs
    (off the critical path, but not left for the end of the run: nothing is held during the
    tool), and the answer comes only once every turn is settled."""
    before = budget_view(budgeted, "sk-thrifty")
    seen: list[dict[str, Any]] = []

    def run() -> None:
        client_for(budgeted, "sk-thrifty").chat.completions.create(
            model="scripted-a",
            tools=[{"type": "mcp", "server_label": "calc"}],  # type: ignore[list-item]
            messages=[{"role": "user", "content": 'call calc__slow {"seconds": 4}'}],
        )
        seen.append(budget_view(budgeted, "sk-thrifty"))

    with ThreadPoolExecutor(1) as pool:
        running = pool.submit(run)
        during = budget_view(budgeted, "sk-thrifty")

        def first_turn_settled() -> bool:
            nonlocal during
            during = budget_view(budgeted, "sk-thrifty")
            return during["spent_usd"] > before["spent_usd"] or running.done()

        wait_until(first_turn_settled, what="the first turn settled")
        read_while_running = not running.done()
        running.result()
    assert read_while_running, "the run was over before the first turn's spend was read"
    assert during["spent_usd"] > before["spent_usd"] and during["held_usd"] == 0
    after = seen[0]
    assert after["spent_usd"] > during["spent_usd"] and after["held_usd"] == 0  # + the answer


ORDINARY = 'call calc__add {"a": 2, "b": 3}'
"""An ordinary run: one MCP call, two model calls."""


def test_a_burst_then_one_at_a_time_serves_what_the_budget_pays_for(
    toolbridge_factory: Any, mcp_servers: dict[str, RunningMcpServer]
) -> None:
    """A budget for about 60 ordinary runs: a burst of 30 all get full answers (none empty),
    then runs one at a time until a 429 says the budget is spent; at least 95 % of what it
    pays for is served in all, spend stays within the limit, and no hold outlives the runs."""
    server, budget, tools = _ordinary_budget(toolbridge_factory, mcp_servers, 60, "burst")
    with ThreadPoolExecutor(max_workers=30) as pool:
        burst = list(pool.map(lambda _: _ordinary_run(server, "sk-burst", tools), range(30)))
    print("30 concurrent runs, budget for 60:", {o: burst.count(o) for o in set(burst)})
    assert burst.count("answered") >= 27 and "empty" not in burst
    served, refusal = _until_refused(server, "sk-burst", tools, 60)
    print(f"then one at a time: {served}; in all {burst.count('answered') + served} of 60")
    assert burst.count("answered") + served >= 57
    _assert_quota_refusal(refusal)
    wait_until(lambda: budget_view(server, "sk-burst")["held_usd"] == 0, 1, "no hold left")
    assert 0 < budget_view(server, "sk-burst")["spent_usd"] <= budget + 1e-12


def test_one_at_a_time_from_a_fresh_budget_then_429(
    toolbridge_factory: Any, mcp_servers: dict[str, RunningMcpServer]
) -> None:
    server, budget, tools = _ordinary_budget(toolbridge_factory, mcp_servers, 60, "steady")
    served, refusal = _until_refused(server, "sk-steady", tools, 70)
    print(f"one at a time from a budget for 60 runs: {served} served, then 429")
    assert served >= 57
    _assert_quota_refusal(refusal)
    # Refused again, never a 200 without an answer.
    _assert_quota_refusal(_post_ordinary(server, "sk-steady", tools))
    view = budget_view(server, "sk-steady")
    assert view["spent_usd"] <= budget + 1e-12 and view["held_usd"] == 0
    assert view["holds_in_flight"] == 0


def _ordinary_body(tools: list[dict[str, Any]]) -> dict[str, Any]:
    return {
        "model": "scripted-a",
        "tools": tools,
        "messages": [{"role": "user", "content": ORDINARY}],
    }


def _ordinary_budget(
    toolbridge_factory: Any, mcp_servers: dict[str, RunningMcpServer], runs: int, key_id: str
) -> tuple[ServerThread, float, list[dict[str, Any]]]:
    """A toolbridge whose key ``sk-<key_id>`` has a budget for ``runs`` ordinary runs (their
    cost measured first on an unlimited key), the budget, and the run's tools."""
    registered = [{"label": "calc", "url": mcp_servers["modern"].url}]
    names = ["add", "echo", "whoami", "fail", "slow", "files.read-v2"]
    tools = [{"type": "mcp", "server_label": "calc", "allowed_tools": names}]
    meter = toolbridge_factory(
        api_keys=[{"id": "meter", "key": "sk-meter"}], mcp_servers=registered
    )
    before = budget_view(meter, "sk-meter")["spent_usd"]
    assert _ordinary_run(meter, "sk-meter", tools) == "answered"
    budget = runs * (budget_view(meter, "sk-meter")["spent_usd"] - before)
    meter.stop()
    keys = [{"id": key_id, "key": f"sk-{key_id}", "budget": {"total_usd": budget}}]
    return toolbridge_factory(api_keys=keys, mcp_servers=registered), budget, tools


def _post_ordinary(server: ServerThread, key: str, tools: list[dict[str, Any]]) -> httpx.Response:
    return httpx.post(
        f"{server.url}/v1/chat/completions",
        json=_ordinary_body(tools),
        timeout=60,
        headers={"Authorization": f"Bearer {key}"},
    )


def _ordinary_run(server: ServerThread, key: str, tools: list[dict[str, Any]]) -> str:
    """'answered' (the full answer), 'empty' (a 200 with no answer), or the HTTP status."""
    response = _post_ordinary(server, key, tools)
    if response.status_code != 200:
        return str(response.status_code)
    message = response.json()["choices"][0]["message"]
    if message["content"] == "done: calc__add=5":
        return "answered"
    return "empty" if not message["content"] else f"other: {message['content'][:80]}"


def _until_refused(
    server: ServerThread, key: str, tools: list[dict[str, Any]], most: int
) -> tuple[int, httpx.Response]:
    """Ordinary runs one at a time until one is not answered in full: how many were, and the
    response that was not (it must be the 429)."""
    for served in range(most):
        response = _post_ordinary(server, key, tools)
        if response.status_code != 200:
            return served, response
        content = response.json()["choices"][0]["message"]["content"]
        assert content, "a 200 without an answer"
        if content != "done: calc__add=5":
            # The budget ran out between the run's two calls: said so, never empty.
            assert "budget ran out" in content and "calc.add" in content, content
    raise AssertionError(f"{most} runs and never refused")


def _assert_quota_refusal(response: httpx.Response) -> None:
    assert response.status_code == 429, response.text
    error = response.json()["error"]
    assert error["type"] == error["code"] == "insufficient_quota"
    assert "key:" in error["message"] and "left" in error["message"]


def test_a_tool_run_without_limits_makes_one_budget_round_trip_or_two(
    toolbridge_factory: Any, redis_url: str
) -> None:
    """Without a limit, a run's calls hold nothing while Redis answered this replica within
    ``ANSWERED_S`` (one script settles both calls at the end); after a quiet spell the first
    turn holds (Redis answers before anything is spent) and the second rides on it. Either
    way every call is charged, once, even when the settlement is sent again."""
    prefix = f"tb-trips-{uuid.uuid4().hex[:8]}:"
    server = toolbridge_factory(redis_prefix=prefix)
    client = openai.OpenAI(base_url=f"{server.url}/v1", api_key=TEST_KEY, max_retries=0)

    def run() -> str | None:
        completion = client.chat.completions.create(
            model="scripted-a",
            messages=[{"role": "user", "content": 'call calc__add {"a": 2, "b": 3}'}],
            tools=[{"type": "mcp", "server_label": "calc"}],  # type: ignore[list-item]
        )
        return completion.choices[0].message.content

    cluster = sync_redis(redis_url)
    tag = f"{{{prefix}budget}}"
    if isinstance(cluster, redis.RedisCluster):  # every budget key is on the tag's node
        node = cluster.get_node_from_key(tag)
        node_client = redis.Redis(host=node.host, port=node.port)
    else:
        node_client = cluster

    def scripts_of_a_run(after_s: float) -> list[str]:
        """The budget scripts Redis ran for one run started ``after_s`` after the last one."""
        scripts: list[str] = []
        stop = f"stop-{uuid.uuid4().hex}"

        def watch() -> None:
            with node_client.monitor() as monitor:
                for command in monitor.listen():
                    text = command["command"]
                    if stop in text:
                        return
                    if text.startswith("EVAL") and tag in text:
                        scripts.append(text)

        with ThreadPoolExecutor(1) as pool:
            watching = pool.submit(watch)
            time.sleep(after_s)  # MONITOR is on meanwhile
            assert run() == "done: calc__add=5"
            node_client.echo(stop)
            watching.result(timeout=10)
        return scripts

    run()  # warm: sessions, scripts loaded
    for after_s, trips in ((0.3, 1), (ANSWERED_S + 0.5, 2)):
        spent_before = budget_view(server, TEST_KEY)["spent_usd"]
        scripts = scripts_of_a_run(after_s)
        assert len(scripts) == trips, scripts
        # The settlement's last two arguments are the two calls' costs: both charged, once,
        # even when the script is sent again (as a cluster client does after an error).
        settlement = scripts[-1].split()
        charged = float(settlement[-2]) + float(settlement[-1])
        assert charged > 0
        view = budget_view(server, TEST_KEY)
        assert view["spent_usd"] == pytest.approx(spent_before + charged)
        node_client.execute_command(*settlement)
        assert budget_view(server, TEST_KEY)["spent_usd"] == pytest.approx(view["spent_usd"])
        assert view["held_usd"] == 0 and view["holds_in_flight"] == 0
