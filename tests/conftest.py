"""Shared fixtures: real Redis, real MCP servers, the scripted model, toolbridge over HTTP."""

from __future__ import annotations

import os
import sys
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

# Tests import litellm themselves (token counts): never let it download its price map.
os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")

import openai
import pytest
import redis

from app.config import ApiKeyConfig, ModelEntry, RegisteredServer, Settings
from app.demo.scripted_model import create_scripted_model_app
from app.http_writes import GatheredWritesProtocol
from app.main import create_app
from app.store.connect import RedisClient, connect, warm_up
from app.store.embedded import start_embedded_cluster, start_embedded_redis
from tests.fixtures.mcp_servers import (
    KINDS,
    RunningMcpServer,
    build_big_server,
    start_mcp_server,
)
from tests.fixtures.servers import ServerThread

CLUSTER = os.environ.get("TOOLBRIDGE_TEST_REDIS") == "cluster"
"""``make test`` runs the Redis-backed tests (marker ``redis``) a second time on a real
three-primary Redis Cluster (``TOOLBRIDGE_TEST_REDIS=cluster``)."""

TEST_KEY = "sk-test-full-access"
LIMITED_KEY = "sk-test-limited"


def _docker_redis() -> Iterator[str] | None:
    """A Redis container when a Docker engine answers; None otherwise."""
    try:
        import docker

        docker.from_env(timeout=3).ping()
    except Exception:  # noqa: BLE001 - no engine is the common case here
        return None
    from testcontainers.redis import RedisContainer

    def run() -> Iterator[str]:
        with RedisContainer("redis:7-alpine") as container:
            host = container.get_container_host_ip()
            yield f"redis://{host}:{container.get_exposed_port(6379)}/0"

    return run()


_REDIS_REPORT: list[str] = []
"""The test Redis (each node of the test cluster) and the end of its log, when a test failed."""


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    if _REDIS_REPORT:
        terminalreporter.section("the test Redis when the tests ended")
        for line in _REDIS_REPORT:
            terminalreporter.write_line(line)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if "redis_url" in getattr(item, "fixturenames", ()):
            item.add_marker(pytest.mark.redis)


async def redis_client(url: str) -> RedisClient:
    """An async client for the test Redis, cluster or not, made as toolbridge makes it."""
    client = connect(url, cluster=CLUSTER)
    await warm_up(client)
    return client


def sync_redis(url: str) -> redis.Redis | redis.RedisCluster:
    """A blocking client for the test Redis, cluster or not."""
    return redis.RedisCluster.from_url(url) if CLUSTER else redis.Redis.from_url(url)


@pytest.fixture(scope="session")
def redis_url(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[str]:
    """A real three-primary cluster (``TOOLBRIDGE_TEST_REDIS=cluster``); else REDIS_URL if set,
    else a container, else a real redis-server on a free port."""
    if CLUSTER:
        cluster = start_embedded_cluster(tmp_path_factory.mktemp("cluster"))
        yield cluster.url
        if request.session.testsfailed:
            _REDIS_REPORT.extend(cluster.report())
        cluster.stop()
        return
    if url := os.environ.get("REDIS_URL"):
        yield url
        return
    if (container := _docker_redis()) is not None:
        yield from container
        return
    embedded = start_embedded_redis(tmp_path_factory.mktemp("redis"), persist=False)
    yield embedded.url
    if request.session.testsfailed:
        _REDIS_REPORT.extend(embedded.report())
    embedded.stop()


@pytest.fixture(scope="session")
def scripted_model() -> Iterator[ServerThread]:
    server = ServerThread(create_scripted_model_app(record=True)).start()
    yield server
    server.stop()


@pytest.fixture(scope="session")
def mcp_servers() -> Iterator[dict[str, RunningMcpServer]]:
    servers = {kind: start_mcp_server(kind) for kind in KINDS}
    yield servers
    for server in servers.values():
        server.thread.stop()


@pytest.fixture(scope="module")
def big_server() -> Iterator[str]:
    thread = ServerThread(build_big_server().streamable_http_app()).start()
    yield f"{thread.url}/mcp"
    thread.stop()


@pytest.fixture
def mcp_server(mcp_servers: dict[str, RunningMcpServer]) -> RunningMcpServer:
    """The 2026-07-28 server, with its request log cleared."""
    server = mcp_servers["modern"]
    server.log.reset()
    return server


def base_settings(
    redis_url: str, model_url: str, servers: dict[str, RunningMcpServer], **overrides: Any
) -> Settings:
    # Both models answer sampling: "a" is cheap and fast, "b" dear and clever. "a" takes up to
    # 1,024 tools a call; "b" OpenAI's 128 (the default).
    infos = {
        "scripted-a": {
            "max_tools": 1024,
            "sampling": True,
            "aliases": ["alpha"],
            "input_cost_per_token": 1e-6,
            "output_cost_per_token": 2e-6,
            "speed": 0.9,
            "intelligence": 0.3,
        },
        "scripted-b": {
            "sampling": True,
            "aliases": ["beta"],
            "input_cost_per_token": 1e-5,
            "output_cost_per_token": 2e-5,
            "speed": 0.2,
            "intelligence": 0.9,
        },
    }
    models = [
        ModelEntry(
            model_name=name,
            litellm_params={
                "model": f"openai/{name}",
                "api_base": f"{model_url}/v1",
                "api_key": "sk-provider",
            },
            model_info=info,
        )
        for name, info in infos.items()
    ]
    registered = [
        RegisteredServer(label="calc", url=servers["modern"].url),
        RegisteredServer(label="sampler", url=servers["modern"].url, sampling=True),
        RegisteredServer(label="sampler_legacy", url=servers["legacy"].url, sampling=True),
        RegisteredServer(
            label="stdio_calc",
            transport="stdio",
            command=[sys.executable, "-m", "tests.fixtures.mcp_servers"],
        ),
    ]
    keys = [
        ApiKeyConfig(id="tester", key=TEST_KEY),
        ApiKeyConfig(
            id="limited",
            key=LIMITED_KEY,
            models=["scripted-b"],
            mcp_servers=["calc"],
            allow_server_urls=False,
        ),
    ]
    values: dict[str, Any] = {
        "redis_url": redis_url,
        "redis_prefix": f"tb-test-{uuid.uuid4().hex[:8]}:",
        "demo": "off",
        "model_list": models,
        "mcp_servers": registered,
        "api_keys": keys,
        "keepalive_s": 0.3,
        "ssrf_allowlist": ["127.0.0.1/32"],  # the test MCP servers live on loopback
        "sampling": {
            "default_model": "scripted-a",
            "cross_family": {"claude": "scripted-b"},
            "max_tokens_cap": 100,
        },
        "model_num_retries": 0,
        "data_dir": Path(".data/test"),
    }
    values.update(overrides)
    return Settings(**values)


@pytest.fixture(scope="session")
def start_toolbridge(
    redis_url: str, scripted_model: ServerThread, mcp_servers: dict[str, RunningMcpServer]
) -> Callable[..., ServerThread]:
    """Start a toolbridge with its own Redis prefix and any settings overridden; the caller
    stops it."""

    def start(**overrides: Any) -> ServerThread:
        if "redis_url" not in overrides:  # a test's own Redis is a single node
            overrides.setdefault("redis_cluster", CLUSTER)
        settings = base_settings(
            overrides.pop("redis_url", redis_url), scripted_model.url, mcp_servers, **overrides
        )
        app = create_app(settings)  # served as ``python -m app`` serves it
        return ServerThread(app, name="toolbridge", http=GatheredWritesProtocol).start()

    return start


@pytest.fixture(scope="module")
def toolbridge_factory(
    start_toolbridge: Callable[..., ServerThread],
) -> Iterator[Callable[..., ServerThread]]:
    """``start_toolbridge``, stopping what it started when the module's tests are done: a
    toolbridge left serving holds its connections' open files (kept to the session's end, they
    used up CI's 1,024 in the cluster pass), keeps its background work going, and its logs land
    in every later test's."""
    started: list[ServerThread] = []

    def start(**overrides: Any) -> ServerThread:
        started.append(server := start_toolbridge(**overrides))
        return server

    yield start
    for server in started:
        server.stop()


@pytest.fixture(scope="session")
def toolbridge(start_toolbridge: Callable[..., ServerThread]) -> Iterator[ServerThread]:
    server = start_toolbridge()
    yield server
    server.stop()


@pytest.fixture(scope="session")
def client(toolbridge: ServerThread) -> openai.OpenAI:
    """The official OpenAI SDK, pointed at toolbridge."""
    return openai.OpenAI(base_url=f"{toolbridge.url}/v1", api_key=TEST_KEY, max_retries=0)


def mcp_tool(server: RunningMcpServer, label: str = "calc", **extra: Any) -> dict[str, Any]:
    return {"type": "mcp", "server_label": label, "server_url": server.url, **extra}
