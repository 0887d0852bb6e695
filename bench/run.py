"""``make bench``: the standard job through toolbridge against the floor, in one run.

The standard job is a chat completion whose model calls one MCP tool: two model turns and one
tool call. The floor makes the same calls directly: a minimal client that holds one MCP
connection and posts the two model requests itself. Backends, toolbridge and the load generator
run as separate processes on this machine, so the figures include real HTTP on loopback.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import httpx
from mcp import Client

from app.store.embedded import free_port, start_embedded_redis

SCRIPT = 'call demo__add {"a": 2, "b": 3}'
EXPECTED = 'done: demo__add={"result": 5.0}'
KEY = "sk-bench"

Job = Callable[[], Awaitable[None]]


def start_backends() -> tuple[subprocess.Popen[str], dict[str, str]]:
    process = subprocess.Popen(
        [sys.executable, "-m", "bench.backends"], stdout=subprocess.PIPE, text=True
    )
    assert process.stdout is not None
    return process, json.loads(process.stdout.readline())


def start_toolbridge(
    urls: dict[str, str], redis_url: str, server: str, workdir: Path
) -> tuple[subprocess.Popen[bytes], str]:
    config = {
        "model_list": [
            {
                "model_name": "bench",
                "litellm_params": {
                    "model": "openai/bench",
                    "api_base": f"{urls['model']}/v1",
                    "api_key": "x",
                },
            }
        ],
        "mcp_servers": [{"label": "demo", "url": urls[server]}],
        "api_keys": [{"id": "bench", "key": KEY}],
    }
    path = workdir / f"toolbridge-{server}.json"
    path.write_text(json.dumps(config))  # JSON is YAML
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("TOOLBRIDGE_")}
    env.update(
        TOOLBRIDGE_CONFIG_FILE=str(path),
        TOOLBRIDGE_REDIS_URL=redis_url,
        TOOLBRIDGE_PORT=str(port),
        TOOLBRIDGE_LOG_LEVEL="WARNING",
        TOOLBRIDGE_REDIS_PREFIX=f"bench-{server}-{time.time_ns()}:",
    )
    process = subprocess.Popen(
        [sys.executable, "-m", "app"],
        env=env,
        cwd=workdir,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    url = f"http://127.0.0.1:{port}"
    for _ in range(300):
        try:
            if httpx.get(f"{url}/readyz", timeout=1).status_code == 200:
                return process, url
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    raise RuntimeError("toolbridge did not start")


def toolbridge_job(http: httpx.AsyncClient, url: str) -> Job:
    body = {
        "model": "bench",
        "messages": [{"role": "user", "content": SCRIPT}],
        "tools": [{"type": "mcp", "server_label": "demo"}],
    }

    async def job() -> None:
        response = await http.post(
            f"{url}/v1/chat/completions", json=body, headers={"Authorization": f"Bearer {KEY}"}
        )
        assert response.json()["choices"][0]["message"]["content"] == EXPECTED, response.text

    return job


def responses_job(http: httpx.AsyncClient, url: str, *, store: bool = True) -> Job:
    """The same job over /v1/responses (tools never need approval here)."""
    body = {
        "model": "bench",
        "input": SCRIPT,
        "store": store,
        "tools": [{"type": "mcp", "server_label": "demo", "require_approval": "never"}],
    }

    async def job() -> None:
        response = await http.post(
            f"{url}/v1/responses", json=body, headers={"Authorization": f"Bearer {KEY}"}
        )
        output = response.json()["output"]
        assert output[-1]["content"][0]["text"] == EXPECTED, response.text

    return job


def floor_job(http: httpx.AsyncClient, model_url: str, mcp: Client) -> Job:
    """The same work with nothing in between: model, tool, model."""
    tools = [
        {
            "type": "function",
            "function": {"name": "demo__add", "parameters": {"type": "object", "properties": {}}},
        }
    ]

    async def job() -> None:
        messages: list[dict[str, Any]] = [{"role": "user", "content": SCRIPT}]
        first = (
            await http.post(
                f"{model_url}/v1/chat/completions",
                json={"model": "bench", "messages": messages, "tools": tools},
            )
        ).json()
        message = first["choices"][0]["message"]
        call = message["tool_calls"][0]
        result = await mcp.call_tool("add", json.loads(call["function"]["arguments"]))
        messages += [
            message,
            {
                "role": "tool",
                "tool_call_id": call["id"],
                "content": json.dumps(result.structured_content),
            },
        ]
        second = (
            await http.post(
                f"{model_url}/v1/chat/completions",
                json={"model": "bench", "messages": messages, "tools": tools},
            )
        ).json()
        assert second["choices"][0]["message"]["content"] == EXPECTED

    return job


def litellm_floor_job(model_url: str, mcp: Client) -> Job:
    """The floor again, but with the two model calls made through litellm's Router as toolbridge
    makes them: the difference to the plain floor is litellm's own cost, not toolbridge's."""
    os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
    import litellm

    router = litellm.Router(
        model_list=[
            {
                "model_name": "bench",
                "litellm_params": {
                    "model": "openai/bench",
                    "api_base": f"{model_url}/v1",
                    "api_key": "x",
                },
            }
        ]
    )
    tools = [
        {
            "type": "function",
            "function": {"name": "demo__add", "parameters": {"type": "object", "properties": {}}},
        }
    ]

    async def job() -> None:
        messages: list[dict[str, Any]] = [{"role": "user", "content": SCRIPT}]
        first = await router.acompletion(model="bench", messages=messages, tools=tools)
        message = first.choices[0].message
        call = message.tool_calls[0]
        result = await mcp.call_tool("add", json.loads(call.function.arguments))
        messages += [
            message.model_dump(exclude_none=True),
            {
                "role": "tool",
                "tool_call_id": call.id,
                "content": json.dumps(result.structured_content),
            },
        ]
        second = await router.acompletion(model="bench", messages=messages, tools=tools)
        assert second.choices[0].message.content == EXPECTED

    return job


async def latency_ms(job: Job, count: int) -> tuple[float, float]:
    samples = []
    for _ in range(count):
        started = time.perf_counter()
        await job()
        samples.append((time.perf_counter() - started) * 1000)
    samples.sort()
    return statistics.median(samples), samples[min(len(samples) - 1, int(len(samples) * 0.99))]


async def throughput(job: Job, concurrency: int, total: int) -> float:
    remaining = total

    async def worker() -> None:
        nonlocal remaining
        while remaining > 0:
            remaining -= 1
            await job()

    started = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return total / (time.perf_counter() - started)


async def mcp_requests_per_run(
    http: httpx.AsyncClient, urls: dict[str, str], server: str, job: Job, runs: int = 20
) -> float:
    before = (await http.get(urls["stats"])).json().get(server, 0)
    for _ in range(runs):
        await job()
    after = (await http.get(urls["stats"])).json().get(server, 0)
    return (after - before) / runs


async def measure(args: argparse.Namespace, urls: dict[str, str], bridges: dict[str, str]) -> None:
    limits = httpx.Limits(max_connections=64, max_keepalive_connections=64)
    async with httpx.AsyncClient(timeout=60, limits=limits) as http, Client(urls["modern"]) as mcp:
        jobs = {
            "floor": floor_job(http, urls["model"], mcp),
            "floor+litellm": litellm_floor_job(urls["model"], mcp),
            "toolbridge": toolbridge_job(http, bridges["modern"]),
            "responses": responses_job(http, bridges["modern"]),
        }
        for job in jobs.values():  # warm caches, pools and imports
            await latency_ms(job, 20)
        rows = {}
        for name, job in jobs.items():
            p50, p99 = await latency_ms(job, args.requests)
            rps = await throughput(job, args.concurrency, args.requests)
            rows[name] = (p50, p99, rps)
            print(
                f"{name:<14} p50 {p50:7.2f} ms   p99 {p99:7.2f} ms   "
                f"{rps:7.1f} req/s at concurrency {args.concurrency}"
            )
        fp50, fp99, frps = rows["floor"]
        lp50, _, lrps = rows["floor+litellm"]
        print(f"litellm's own cost (floor+litellm - floor): {lp50 - fp50:.2f} ms at p50")
        for name in ("toolbridge", "responses"):
            bp50, bp99, brps = rows[name]
            print(
                f"{name}: added at p50 {bp50 - fp50:.2f} ms (target <= 10 ms), p99 ratio "
                f"{bp99 / fp99:.2f}x, throughput ratio {brps / frps:.2f} (target >= 0.5); "
                f"over floor+litellm: {bp50 - lp50:.2f} ms at p50, throughput ratio "
                f"{brps / lrps:.2f}"
            )
        for server in ("modern", "legacy"):
            warm = toolbridge_job(http, bridges[server])
            await warm()
            per_run = await mcp_requests_per_run(http, urls, server, warm)
            print(f"MCP HTTP requests per toolbridge request, warm {server} server: {per_run:.1f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--requests", type=int, default=300)
    parser.add_argument("--concurrency", type=int, default=16)
    args = parser.parse_args()
    workdir = Path(tempfile.mkdtemp(prefix="toolbridge-bench-"))
    redis_server = start_embedded_redis(workdir / "redis", persist=False)
    backends, urls = start_backends()
    bridges: dict[str, str] = {}
    processes = []
    try:
        for server in ("modern", "legacy"):
            process, bridges[server] = start_toolbridge(urls, redis_server.url, server, workdir)
            processes.append(process)
        asyncio.run(measure(args, urls, bridges))
    finally:
        for process in processes:
            process.terminate()
        backends.terminate()
        redis_server.stop()


if __name__ == "__main__":
    main()
