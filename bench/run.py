"""``make bench``: the standard job through toolbridge against the floor, in one run.

The standard job is a chat completion whose model calls one MCP tool: two model turns and one
tool call. The floor makes the same calls directly: a minimal client that holds one MCP
connection and posts the two model requests itself. Backends, toolbridge and the load generator
run as separate processes on this machine, so the figures include real HTTP on loopback.

Every figure is printed with its target (issue 13) and whether it is met; the exit status is 1
when any target is missed, so a regression is visible. Targets compare with the floor measured
in the same run: these machines are shared and noisy, absolute numbers are not comparable.
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
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
from mcp import Client

from app.store.embedded import free_port, start_embedded_redis

KEY = "sk-bench"
LABELS = {"modern": "demo", "legacy": "legacy", "stdio": "local"}
"""The registered server of each kind, by label (one toolbridge serves all three)."""


def script(label: str = "demo") -> str:
    return f'call {label}__add {{"a": 2, "b": 3}}'


def expected(label: str = "demo") -> str:
    return f"done: {label}__add=5.0"


SCRIPT, EXPECTED = script(), expected()

Job = Callable[[], Awaitable[Any]]


def start_backends() -> tuple[subprocess.Popen[str], dict[str, str]]:
    process = subprocess.Popen(
        [sys.executable, "-m", "bench.backends"], stdout=subprocess.PIPE, text=True
    )
    assert process.stdout is not None
    return process, json.loads(process.stdout.readline())


def start_toolbridge(
    urls: dict[str, str],
    redis_url: str,
    workdir: Path,
    *,
    prefix: str | None = None,
    settings: dict[str, Any] | None = None,
    source: Path | None = None,
) -> tuple[subprocess.Popen[bytes], str, float]:
    """A toolbridge process with the three servers registered; its URL and start-up seconds
    (process start to ``/readyz`` answering 200). Replicas share Redis by sharing ``prefix``;
    ``settings`` are added to its configuration file; ``source``: the checkout whose ``app``
    it runs (default: the installed one)."""
    config = {
        "model_list": [
            {
                "model_name": "bench",
                "litellm_params": {
                    "model": "openai/bench",
                    "api_base": f"{urls['model']}/v1",
                    "api_key": "x",
                },
                # Priced as hosted models are, so every run's spend is counted as it would be.
                "model_info": {"input_cost_per_token": 1.5e-7, "output_cost_per_token": 6e-7},
            }
        ],
        "mcp_servers": [
            {"label": LABELS["modern"], "url": urls["modern"]},
            {"label": LABELS["legacy"], "url": urls["legacy"]},
            {
                "label": LABELS["stdio"],
                "transport": "stdio",
                "command": [sys.executable, "-m", "bench.stdio_server"],
                "env": {"PYTHONPATH": str(Path(__file__).parent.parent)},
            },
        ],
        "api_keys": [{"id": "bench", "key": KEY}],
        **(settings or {}),
    }
    path = workdir / "toolbridge.json"
    path.write_text(json.dumps(config))  # JSON is YAML
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("TOOLBRIDGE_")}
    env.update(
        TOOLBRIDGE_CONFIG_FILE=str(path),
        TOOLBRIDGE_REDIS_URL=redis_url,
        TOOLBRIDGE_PORT=str(port),
        TOOLBRIDGE_LOG_LEVEL="WARNING",
        TOOLBRIDGE_REDIS_PREFIX=prefix or f"bench-{time.time_ns()}:",
    )
    if source is not None:
        env["PYTHONPATH"] = str(source)
    started = time.perf_counter()
    process = subprocess.Popen(
        [sys.executable, "-m", "app"],
        env=env,
        cwd=workdir,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    url = f"http://127.0.0.1:{port}"
    deadline = started + 60
    while time.perf_counter() < deadline:
        try:
            if httpx.get(f"{url}/readyz", timeout=1).status_code == 200:
                return process, url, time.perf_counter() - started
        except httpx.HTTPError:
            pass
        time.sleep(0.01)
    raise RuntimeError("toolbridge did not start")


@dataclass(frozen=True)
class Bench:
    """The backends' URLs, and the toolbridge replicas (process, URL) on one Redis."""

    urls: dict[str, str]
    replicas: list[tuple[subprocess.Popen[bytes], str]]
    redis_url: str


@contextmanager
def bench_services(replicas: int = 1, settings: dict[str, Any] | None = None) -> Iterator[Bench]:
    """A Redis, the backends and ``replicas`` toolbridges sharing them, stopped on exit."""
    with tempfile.TemporaryDirectory() as tmp:
        redis = start_embedded_redis(Path(tmp) / "redis", persist=False)
        backends, urls = start_backends()
        prefix = f"bench-{time.time_ns()}:"
        started: list[tuple[subprocess.Popen[bytes], str]] = []
        try:
            for _ in range(replicas):
                process, url, _ = start_toolbridge(
                    urls, redis.url, Path(tmp), prefix=prefix, settings=settings
                )
                started.append((process, url))
            yield Bench(urls, started, redis.url)
        finally:
            for process, _ in started:
                process.terminate()
                process.wait(30)
            backends.terminate()
            redis.stop()


def toolbridge_job(http: httpx.AsyncClient, url: str, label: str = "demo") -> Job:
    body = {
        "model": "bench",
        "messages": [{"role": "user", "content": script(label)}],
        "tools": [{"type": "mcp", "server_label": label}],
    }

    async def job() -> None:
        response = await http.post(
            f"{url}/v1/chat/completions", json=body, headers={"Authorization": f"Bearer {KEY}"}
        )
        assert response.json()["choices"][0]["message"]["content"] == expected(label), response.text

    return job


def has_text(line: str) -> bool:
    """An SSE line carrying a chunk with text (not the first chunk's empty content)."""
    if not line.startswith("data: {"):
        return False
    choices = json.loads(line[6:]).get("choices") or [{}]
    return bool((choices[0].get("delta") or {}).get("content"))


async def first_text_after(
    http: httpx.AsyncClient,
    url: str,
    body: dict[str, Any],
    started: float,
    headers: dict[str, str] | None = None,
) -> float:
    """POST ``body`` streamed and read it all; seconds from ``started`` to the first text. The
    stream must be the standard job's whole answer (``EXPECTED``), ended by ``[DONE]``."""
    first: float | None = None
    text: list[str] = []
    last = ""
    async with http.stream("POST", url, json=body, headers=headers) as response:
        response.raise_for_status()
        async for line in response.aiter_lines():
            last = line or last
            if has_text(line):
                first = first or time.perf_counter() - started
                text.append(json.loads(line[6:])["choices"][0]["delta"]["content"])
    assert first is not None, "no text arrived"
    assert "".join(text) == EXPECTED, text
    assert last == "data: [DONE]", last
    return first


def toolbridge_ttfb(http: httpx.AsyncClient, url: str) -> Callable[[], Awaitable[float]]:
    """The chat job streamed: seconds to the first chunk carrying text."""
    body = {
        "model": "bench",
        "stream": True,
        "messages": [{"role": "user", "content": SCRIPT}],
        "tools": [{"type": "mcp", "server_label": "demo"}],
    }

    async def job() -> float:
        started = time.perf_counter()
        headers = {"Authorization": f"Bearer {KEY}"}
        return await first_text_after(http, f"{url}/v1/chat/completions", body, started, headers)

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


def floor_job(
    http: httpx.AsyncClient, model_url: str, mcp: Client, *, stream: bool = False
) -> Callable[[], Awaitable[float]]:
    """The same work with nothing in between: model, tool, model (the second call streamed if
    ``stream``). Returns the seconds to the first text."""
    tools = [
        {
            "type": "function",
            "function": {"name": "demo__add", "parameters": {"type": "object", "properties": {}}},
        }
    ]
    url = f"{model_url}/v1/chat/completions"

    async def job() -> float:
        started = time.perf_counter()
        messages: list[dict[str, Any]] = [{"role": "user", "content": SCRIPT}]
        first = (
            await http.post(url, json={"model": "bench", "messages": messages, "tools": tools})
        ).json()
        message = first["choices"][0]["message"]
        call = message["tool_calls"][0]
        result = await mcp.call_tool("add", json.loads(call["function"]["arguments"]))
        messages += [
            message,
            {
                "role": "tool",
                "tool_call_id": call["id"],
                "content": result.content[0].text,  # type: ignore[union-attr]
            },
        ]
        body = {"model": "bench", "messages": messages, "tools": tools, "stream": stream}
        if not stream:
            second = (await http.post(url, json=body)).json()
            assert second["choices"][0]["message"]["content"] == EXPECTED
            return time.perf_counter() - started
        return await first_text_after(http, url, body, started)

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
                "content": result.content[0].text,  # type: ignore[union-attr]
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


async def run_at(job: Job, runs: int, concurrency: int) -> None:
    """``runs`` runs of ``job``, ``concurrency`` at a time."""
    left = runs

    async def worker() -> None:
        nonlocal left
        while left > 0:
            left -= 1
            await job()

    await asyncio.gather(*(worker() for _ in range(concurrency)))


async def throughput(job: Job, concurrency: int, total: int) -> float:
    started = time.perf_counter()
    await run_at(job, total, concurrency)
    return total / (time.perf_counter() - started)


async def interleaved_latency(jobs: dict[str, Job], count: int) -> dict[str, tuple[float, float]]:
    """p50 and p99 (ms) at concurrency 1 of every job, a sample of each in turn, so the
    machine's drift during the run weighs on every job alike."""
    samples: dict[str, list[float]] = {name: [] for name in jobs}
    for _ in range(count):
        for name, job in jobs.items():
            samples[name].append((await latency_ms(job, 1))[0])
    figures = {}
    for name, values in samples.items():
        ordered = sorted(values)
        p99 = ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))]
        figures[name] = (statistics.median(ordered), p99)
    return figures


async def interleaved(
    jobs: dict[str, Job], count: int, concurrency: int
) -> dict[str, tuple[float, float, float]]:
    """``interleaved_latency``, and requests/s at ``concurrency`` (median of three rounds of
    ``count`` requests each, alternating between the jobs: a round of a third as many, under a
    second, swung by a third from one round to the next on this shared machine)."""
    latency = await interleaved_latency(jobs, count)
    rounds: dict[str, list[float]] = {name: [] for name in jobs}
    for _ in range(3):
        for name, job in jobs.items():
            rounds[name].append(await throughput(job, concurrency, max(count, 16)))
    return {name: (*latency[name], statistics.median(rounds[name])) for name in jobs}


async def first_text_ms(
    jobs: dict[str, Callable[[], Awaitable[float]]], count: int
) -> dict[str, float]:
    """Median milliseconds to the first text of each streamed job, interleaved."""
    for first_text in jobs.values():
        for _ in range(10):
            await first_text()
    firsts: dict[str, list[float]] = {name: [] for name in jobs}
    for _ in range(count):
        for name, first_text in jobs.items():
            firsts[name].append(await first_text() * 1000)
    return {name: statistics.median(values) for name, values in firsts.items()}


async def mcp_requests_per_run(
    http: httpx.AsyncClient, urls: dict[str, str], server: str, job: Job, runs: int = 20
) -> float:
    before = (await http.get(urls["stats"])).json().get(server, 0)
    for _ in range(runs):
        await job()
    after = (await http.get(urls["stats"])).json().get(server, 0)
    return (after - before) / runs


def rss_mb(pid: int) -> float:
    """Resident memory of one process (Linux)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError("no VmRSS")


class Report:
    """Figures with their targets; ``missed`` counts the targets not met."""

    def __init__(self) -> None:
        self.missed = 0

    def figure(self, name: str, value: float, unit: str, target: str, met: bool) -> None:
        self.missed += not met
        print(
            f"  {name:<52} {value:9.2f} {unit:<6} target {target:<28} {'met' if met else 'MISSED'}"
        )


async def measure(
    args: argparse.Namespace, urls: dict[str, str], bridge: str, pid: int, startup_s: float
) -> int:
    # Idle connections expire before uvicorn closes them (5 s), so none is reused as it closes.
    limits = httpx.Limits(max_connections=256, max_keepalive_connections=256, keepalive_expiry=4)
    report = Report()
    async with httpx.AsyncClient(timeout=60, limits=limits) as http, Client(urls["modern"]) as mcp:
        idle_mb = rss_mb(pid)
        jobs: dict[str, Job] = {
            "floor": floor_job(http, urls["model"], mcp),
            "chat": toolbridge_job(http, bridge),
            "responses": responses_job(http, bridge),
        }
        for job in jobs.values():  # warm caches, pools and imports
            await latency_ms(job, 20)
        # The stdio server's process is warm after the first run (app/mcp/sessions/pool.py).
        stdio_job = toolbridge_job(http, bridge, LABELS["stdio"])
        await latency_ms(stdio_job, 3)
        stdio = await interleaved_latency({"http": jobs["chat"], "stdio": stdio_job}, 50)
        stdio_p50, stdio_p99 = stdio["stdio"]
        print(
            "figures (p50/p99 at concurrency 1; requests/s at concurrency "
            f"{args.concurrency}; {args.requests} requests each)"
        )
        rows = await interleaved(jobs, args.requests, args.concurrency)
        for name, (p50, p99, rps) in rows.items():
            print(f"  {name:<20} p50 {p50:7.2f} ms   p99 {p99:7.2f} ms   {rps:7.1f} req/s")
        ttfb = await first_text_ms(
            {
                "floor": floor_job(http, urls["model"], mcp, stream=True),
                "chat": toolbridge_ttfb(http, bridge),
            },
            args.requests // 2,
        )
        print(f"  streaming, first text: floor {ttfb['floor']:.2f} ms, chat {ttfb['chat']:.2f} ms")
        fp50, _, frps = rows["floor"]
        # Last, on its own: litellm leaves background tasks in this process that would slow
        # every job measured after it.
        litellm_job = litellm_floor_job(urls["model"], mcp)
        await latency_ms(litellm_job, 20)
        lp50, lp99 = await latency_ms(litellm_job, args.requests // 2)
        print(f"  {'floor+litellm':<20} p50 {lp50:7.2f} ms   p99 {lp99:7.2f} ms (measured last)")
        print(f"  litellm's own cost (floor+litellm - floor): {lp50 - fp50:.2f} ms at p50")

        print("targets")
        for name in ("chat", "responses"):
            p50, _, rps = rows[name]
            report.figure(
                f"{name}: p50 over the floor", p50 - fp50, "ms", "<= 5 ms", p50 - fp50 <= 5
            )
            report.figure(
                f"{name}: requests/s, ratio to the floor",
                rps / frps,
                "x",
                ">= 0.7",
                rps / frps >= 0.7,
            )
        added = ttfb["chat"] - ttfb["floor"]
        report.figure(
            "chat streamed: first text over the floor's", added, "ms", "<= 5 ms", added <= 5
        )
        for server in ("modern", "legacy"):
            warm = toolbridge_job(http, bridge, LABELS[server])
            await warm()
            per_run = await mcp_requests_per_run(http, urls, server, warm)
            report.figure(
                f"MCP HTTP requests per tool call, warm {server} server",
                per_run,
                "",
                "<= 1",
                per_run <= 1,
            )
        print(f"  {'chat, stdio server':<20} p50 {stdio_p50:7.2f} ms   p99 {stdio_p99:7.2f} ms")
        stdio_added = stdio_p50 - stdio["http"][0]
        report.figure(
            "stdio server: p50 over the same job over HTTP",
            stdio_added,
            "ms",
            "<= 10 ms",
            stdio_added <= 10,
        )
        report.figure(
            "memory: RSS idle (after start-up)", idle_mb, "MB", "<= 200 MB", idle_mb <= 200
        )
        peak = 0.0
        burst = toolbridge_job(http, bridge)

        async def sample() -> None:
            nonlocal peak
            while True:
                peak = max(peak, rss_mb(pid))
                await asyncio.sleep(0.02)

        sampler = asyncio.create_task(sample())
        await asyncio.gather(*(burst() for _ in range(100)))
        sampler.cancel()
        await asyncio.sleep(1)
        after = rss_mb(pid)
        report.figure(
            "memory: RSS peak during 100 concurrent runs", peak, "MB", "<= 250 MB", peak <= 250
        )
        report.figure("memory: RSS after them", after, "MB", "<= 250 MB", after <= 250)
        report.figure(
            "start-up to ready (installed venv, median of 3)",
            startup_s,
            "s",
            "<= 2 s",
            startup_s <= 2,
        )
    print(f"{report.missed} target(s) missed" if report.missed else "all targets met")
    return 1 if report.missed else 0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--requests", type=int, default=300)
    parser.add_argument("--concurrency", type=int, default=16)
    args = parser.parse_args()
    workdir = Path(tempfile.mkdtemp(prefix="toolbridge-bench-"))
    redis_server = start_embedded_redis(workdir / "redis", persist=False)
    backends, urls = start_backends()
    process = None
    try:
        # One start is one sample on a shared machine (seen: 1.4 to 2.4 s within the hour):
        # the figure is the median of three starts, the last one the process measured below.
        starts = []
        for _ in range(2):
            timed, _, seconds = start_toolbridge(urls, redis_server.url, workdir)
            timed.terminate()
            timed.wait()
            starts.append(seconds)
        process, bridge, seconds = start_toolbridge(urls, redis_server.url, workdir)
        starts.append(seconds)
        print("start-up to ready, three starts: " + ", ".join(f"{s:.2f} s" for s in starts))
        startup_s = statistics.median(starts)
        status = asyncio.run(measure(args, urls, bridge, process.pid, startup_s))
    finally:
        if process is not None:
            process.terminate()
        backends.terminate()
        redis_server.stop()
    sys.exit(status)


if __name__ == "__main__":
    main()
