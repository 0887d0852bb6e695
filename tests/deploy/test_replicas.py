"""Three toolbridge processes sharing one Redis, as replicas in a cluster do."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest

from app.store.embedded import free_port
from tests.conftest import CLUSTER
from tests.fixtures.mcp_servers import RunningMcpServer
from tests.fixtures.servers import ServerThread
from tests.fixtures.waiting import wait_until

KEY = "sk-replica"
HOLD_TTL_S = 3.0


def wait_ready(url: str, process: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        assert process.poll() is None, "a replica died while starting"
        try:
            if httpx.get(f"{url}/readyz", timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.3)
    raise AssertionError(f"{url} did not become ready")


LEASE_S = 3.0
"""Background responses' lease here: a dead replica's response fails within it."""


@pytest.fixture(scope="module")
def replica_env(
    tmp_path_factory: pytest.TempPathFactory,
    redis_url: str,
    scripted_model: ServerThread,
    mcp_servers: dict[str, RunningMcpServer],
) -> tuple[dict[str, str], Path]:
    """What every replica of this module starts with: one config, one Redis space."""
    workdir = tmp_path_factory.mktemp("replicas")
    config = {
        "model_list": [
            {
                "model_name": "scripted-a",
                "litellm_params": {
                    "model": "openai/scripted-a",
                    "api_base": f"{scripted_model.url}/v1",
                    "api_key": "x",
                },
                "model_info": {"input_cost_per_token": 1e-6, "output_cost_per_token": 2e-6},
            }
        ],
        "mcp_servers": [{"label": "calc", "url": mcp_servers["modern"].url}],
        "api_keys": [{"id": "replica", "key": KEY, "budget": {"total_usd": 5}}],
        "budget": {"hold_ttl_s": HOLD_TTL_S},
        "background": {"lease_s": LEASE_S},
    }
    path = workdir / "toolbridge.json"
    path.write_text(json.dumps(config))
    env = {k: v for k, v in os.environ.items() if not k.startswith("TOOLBRIDGE_")}
    env.update(
        TOOLBRIDGE_CONFIG_FILE=str(path),
        TOOLBRIDGE_REDIS_URL=redis_url,
        TOOLBRIDGE_REDIS_CLUSTER=str(CLUSTER).lower(),
        TOOLBRIDGE_REDIS_PREFIX=f"tb-replicas-{uuid.uuid4().hex[:6]}:",
        TOOLBRIDGE_LOG_LEVEL="WARNING",
    )
    return env, workdir


def start_replicas(
    replica_env: tuple[dict[str, str], Path], count: int
) -> list[tuple[str, subprocess.Popen[bytes]]]:
    env, workdir = replica_env
    started = []
    for _ in range(count):
        port = free_port()
        process = subprocess.Popen(
            [sys.executable, "-m", "app"],
            cwd=workdir,
            env={**env, "TOOLBRIDGE_PORT": str(port)},
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        started.append((f"http://127.0.0.1:{port}", process))
    for url, process in started:
        wait_ready(url, process)
    return started


def stop(started: list[tuple[str, subprocess.Popen[bytes]]]) -> None:
    for _, process in started:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            process.wait(timeout=30)


@pytest.fixture(scope="module")
def replicas(
    replica_env: tuple[dict[str, str], Path],
) -> Iterator[list[tuple[str, Any]]]:
    started = start_replicas(replica_env, 3)
    yield started
    stop(started)


def client(url: str) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{url}/v1", api_key=KEY, max_retries=0)


def budget(url: str) -> dict[str, Any]:
    view = httpx.get(
        f"{url}/v1/budget", headers={"Authorization": f"Bearer {KEY}"}, timeout=30
    ).json()
    return dict(view["scopes"][0])


def test_state_is_shared_across_replicas(
    replicas: list[tuple[str, Any]], mcp_servers: dict[str, RunningMcpServer]
) -> None:
    (a, _), (b, _), (c, _) = replicas
    server = mcp_servers["modern"]
    server.log.reset()
    first = client(a).responses.create(
        model="scripted-a",
        input='call calc__echo {"text": "one"}',
        tools=[{"type": "mcp", "server_label": "calc", "require_approval": "never"}],
    )
    # Retrieved and continued on other replicas.
    assert client(b).responses.retrieve(first.id).output_text == first.output_text
    follow = client(c).responses.create(
        model="scripted-a", input="say again", previous_response_id=first.id
    )
    assert follow.output_text == "again"
    # A tool list fetched by one replica is a cache hit on another.
    client(b).chat.completions.create(
        model="scripted-a",
        tools=[{"type": "mcp", "server_label": "calc"}],  # type: ignore[list-item]
        messages=[{"role": "user", "content": 'call calc__echo {"text": "two"}'}],
    )
    assert server.log.methods["tools/list"] == 1
    # One budget: spend made anywhere shows everywhere.
    assert budget(a)["spent_usd"] == budget(b)["spent_usd"] == budget(c)["spent_usd"] > 0


def test_killed_replica_leaks_no_budget(
    replicas: list[tuple[str, Any]], replica_env: tuple[dict[str, str], Path]
) -> None:
    (a, _), (b, _), _ = replicas
    [(c, victim)] = start_replicas(replica_env, 1)  # its own: the others live on
    spent_before = budget(a)["spent_usd"]
    body = {"model": "scripted-a", "messages": [{"role": "user", "content": "sleep 30"}]}
    with ThreadPoolExecutor(1) as pool:
        pool.submit(
            lambda: httpx.post(
                f"{c}/v1/chat/completions",
                json=body,
                timeout=60,
                headers={"Authorization": f"Bearer {KEY}"},
            )
        )
        wait_until(lambda: budget(a)["held_usd"] > 0, what="the run on the victim holding budget")
        victim.send_signal(signal.SIGKILL)
        victim.wait(timeout=10)
    # The others keep serving...
    answer = client(b).chat.completions.create(
        model="scripted-a", messages=[{"role": "user", "content": "say still here"}]
    )
    assert answer.choices[0].message.content == "still here"
    # ...and the dead replica's hold lapses on its own: nothing held, nothing lost.
    wait_until(
        lambda: budget(a)["held_usd"] == 0, HOLD_TTL_S + 30, "the dead replica's hold lapsed"
    )
    after = budget(a)
    assert after["spent_usd"] > spent_before  # the run on b was charged; the dead one was not
    assert after["remaining_usd"] == pytest.approx(5 - after["spent_usd"])


def test_a_background_response_is_created_polled_and_cancelled_on_three_replicas(
    replicas: list[tuple[str, Any]], mcp_servers: dict[str, RunningMcpServer]
) -> None:
    (a, _), (b, _), (c, _) = replicas
    server = mcp_servers["modern"]
    server.log.reset()
    queued = client(a).responses.create(
        model="scripted-a",
        input='call calc__slow {"seconds": 60}',
        tools=[{"type": "mcp", "server_label": "calc", "require_approval": "never"}],
        background=True,
    )
    assert queued.status == "queued"
    wait_until(lambda: server.log.slow_started == 1, what="the tool running on a")
    polled = client(b).responses.retrieve(queued.id)
    assert polled.status == "in_progress" and [i.type for i in polled.output] == [
        "mcp_list_tools",
        "mcp_call",
    ]
    assert client(c).responses.cancel(queued.id).status == "cancelled"
    wait_until(lambda: server.log.cancelled == 1, what="the MCP call on a cancelled")
    assert client(b).responses.retrieve(queued.id).status == "cancelled"


def test_a_background_stream_resumes_on_another_replica(replicas: list[tuple[str, Any]]) -> None:
    (a, _), (b, _), (c, _) = replicas
    stream = client(a).responses.create(
        model="scripted-a", input="words 40", background=True, stream=True
    )
    first: list[Any] = []
    for event in stream:
        first.append(event)
        if len(first) == 5:
            break
    stream.close()
    response_id = first[0].response.id
    middle: list[Any] = []
    for event in client(b).responses.retrieve(
        response_id, stream=True, starting_after=first[-1].sequence_number
    ):
        middle.append(event)
        if len(middle) == 5:
            break
    rest = list(
        client(c).responses.retrieve(
            response_id, stream=True, starting_after=middle[-1].sequence_number
        )
    )
    events = first + middle + rest
    assert [e.sequence_number for e in events] == list(range(len(events)))
    assert events[-1].type == "response.completed"
    text = "".join(e.delta for e in events if e.type == "response.output_text.delta")
    assert text.split() == [f"w{i}" for i in range(40)]


def test_a_killed_replica_leaves_its_background_response_failed_within_the_lease(
    replicas: list[tuple[str, Any]], replica_env: tuple[dict[str, str], Path]
) -> None:
    (a, _), _, _ = replicas
    [(victim_url, victim)] = start_replicas(replica_env, 1)
    try:
        stream = client(victim_url).responses.create(
            model="scripted-a", input="sleep 60", background=True, stream=True
        )
        opening = [next(iter(stream)) for _ in range(2)]
        response_id = opening[0].response.id
        assert client(a).responses.retrieve(response_id).status == "in_progress"
        victim.send_signal(signal.SIGKILL)
        victim.wait(timeout=10)
        killed_at = time.monotonic()
        wait_until(
            lambda: client(a).responses.retrieve(response_id).status == "failed",
            LEASE_S + 10,
            "the response failed",
        )
        assert time.monotonic() - killed_at <= LEASE_S + 2  # the lease, and one poll
        failed = client(a).responses.retrieve(response_id)
        assert failed.error is not None and failed.error.code == "server_error"
        assert "run was lost" in failed.error.message
        # A follower reading its stream sees it end, once.
        ended = list(
            client(a).responses.retrieve(
                response_id, stream=True, starting_after=opening[-1].sequence_number
            )
        )
        assert [e.type for e in ended] == ["response.failed"]
        assert ended[0].sequence_number == opening[-1].sequence_number + 1
        # It was never stored (its replica died): deleting it deletes its state and stream.
        client(a).responses.delete(response_id)
        with pytest.raises(openai.NotFoundError):
            client(a).responses.retrieve(response_id)
        with pytest.raises(openai.NotFoundError):
            list(client(a).responses.retrieve(response_id, stream=True, starting_after=0))
    finally:
        stop([(victim_url, victim)])
