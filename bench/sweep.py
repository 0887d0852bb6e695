"""``make bench-sweep``: many runs in flight at once, through toolbridge and through the floor.

At each level (1, 16, 256 and 1,024 runs in flight), streamed and not, every run is the
standard job with a tool that takes 2 s (``demo__wait``): model, tool, model. The same work is
done by the floor (a direct client: httpx to the model, one persistent ``mcp`` SDK session per
load process). toolbridge runs as deployed: ``--replicas`` processes (one per core by
default) on one Redis, the load processes taking them in turn. The load comes from
``LOAD_PROCESSES`` processes of their own (so the generator is not the bottleneck; their CPU is
printed; toolbridge's are called with aiohttp, the cheapest client here), each holding its
share of the runs in flight twice over. Per level it prints completions per second, failed
runs, time to the first text (p50, p99) and, for toolbridge, its replicas' RSS growth per run
in flight; then the targets: completions/s at least 0.8x the floor's, no failed run,
first-text p99 within the floor's + 50 ms. Exits 1 when a target is missed.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Awaitable, Callable
from typing import Any

import aiohttp
import httpx
import httpx2
import psutil
from mcp import Client
from mcp.client.streamable_http import streamable_http_client

from bench.run import KEY, Report, bench_services, has_text, rss_mb

LEVELS = (1, 16, 256, 1024)
LOAD_PROCESSES = 4
TOOL_S = 2.0
SCRIPT = f'call demo__wait {{"seconds": {TOOL_S}}}'
EXPECTED = "done: demo__wait=waited"
TOOLS = [
    {
        "type": "function",
        "function": {
            "name": "demo__wait",
            "parameters": {"type": "object", "properties": {"seconds": {"type": "number"}}},
        },
    }
]


async def _first_text_and_text(
    http: httpx.AsyncClient, url: str, body: dict[str, Any], headers: dict[str, str]
) -> tuple[float | None, str]:
    """Stream ``body``: seconds to the first text (None if none), and the whole text."""
    started, first, text = time.perf_counter(), None, []
    async with http.stream("POST", url, json=body, headers=headers) as answer:
        answer.raise_for_status()
        async for line in answer.aiter_lines():
            if has_text(line):
                first = first or time.perf_counter() - started
                text.append(json.loads(line[6:])["choices"][0]["delta"]["content"])
    return first, "".join(text)


async def toolbridge_run(http: aiohttp.ClientSession, url: str, stream: bool) -> float:
    body = {
        "model": "bench",
        "messages": [{"role": "user", "content": SCRIPT}],
        "tools": [{"type": "mcp", "server_label": "demo"}],
        "stream": stream,
    }
    headers = {"Authorization": f"Bearer {KEY}"}
    started, first, text = time.perf_counter(), None, []
    async with http.post(f"{url}/v1/chat/completions", json=body, headers=headers) as answer:
        if not stream:
            assert answer.status == 200, await answer.text()
            reply = await answer.json()
            assert reply["choices"][0]["message"]["content"] == EXPECTED, reply
            return time.perf_counter() - started
        assert answer.status == 200, await answer.text()
        async for raw in answer.content:
            line = raw.decode().rstrip("\r\n")
            if has_text(line):
                first = first or time.perf_counter() - started
                text.append(json.loads(line[6:])["choices"][0]["delta"]["content"])
    assert first is not None, "no text"
    assert "".join(text) == EXPECTED, text
    return first


async def floor_run(http: httpx.AsyncClient, model_url: str, mcp: Client, stream: bool) -> float:
    started = time.perf_counter()
    url = f"{model_url}/v1/chat/completions"
    messages: list[dict[str, Any]] = [{"role": "user", "content": SCRIPT}]
    first = await http.post(url, json={"model": "bench", "messages": messages, "tools": TOOLS})
    message = first.json()["choices"][0]["message"]
    call = message["tool_calls"][0]
    result = await mcp.call_tool("wait", json.loads(call["function"]["arguments"]))
    content = result.content[0].text  # type: ignore[union-attr]
    messages += [message, {"role": "tool", "tool_call_id": call["id"], "content": content}]
    body = {"model": "bench", "messages": messages, "tools": TOOLS, "stream": stream}
    if stream:
        before = time.perf_counter() - started
        ttfb, text = await _first_text_and_text(http, url, body, {})
        assert ttfb is not None, "no text"
        assert text == EXPECTED, text
        return before + ttfb
    second = await http.post(url, json=body)
    assert second.json()["choices"][0]["message"]["content"] == EXPECTED, second.text
    return time.perf_counter() - started


async def load(args: argparse.Namespace) -> dict[str, Any]:
    """One load process: ``args.concurrency`` runs in flight, each slot running twice. A run
    that did not complete is a failure, whatever stopped it (for the floor, its MCP session
    dying takes every run in flight with it: said, and counted)."""
    # Idle connections closed before the servers' 5 s (uvicorn's, for the floor's backends).
    limits = httpx.Limits(max_connections=4096, max_keepalive_connections=4096, keepalive_expiry=4)
    timings: list[float] = []
    shown = False

    async def slots(run: Callable[[], Awaitable[float]]) -> None:
        async def slot() -> None:
            nonlocal shown
            for _ in range(2):
                try:
                    timings.append(await run())
                except Exception as exc:  # noqa: BLE001 - counted, and the first one shown
                    if not shown:
                        print(f"failed: {type(exc).__name__}: {exc}", file=sys.stderr)
                    shown = True

        await asyncio.gather(*(slot() for _ in range(args.concurrency)))

    started = time.perf_counter()
    if args.target != "floor":
        # The caller of toolbridge is the harness, not what is measured: aiohttp, the cheapest
        # client here (httpx spent about 13 ms of CPU per run at 256 connections a process,
        # which made the load generator the bottleneck at 1,024 in flight).
        connector = aiohttp.TCPConnector(limit=0, keepalive_timeout=4)
        timeout = aiohttp.ClientTimeout(total=120)
        async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:
            await slots(lambda: toolbridge_run(session, args.url, args.stream))
    else:  # the floor as the issue defines it: httpx to the model, one MCP SDK session
        floor_limits = httpx2.Limits(max_connections=4096, keepalive_expiry=4)
        mcp_http = httpx2.AsyncClient(limits=floor_limits, timeout=httpx2.Timeout(120))
        try:
            async with (
                httpx.AsyncClient(timeout=120, limits=limits) as http,
                Client(streamable_http_client(args.mcp, http_client=mcp_http)) as mcp,
            ):
                await slots(lambda: floor_run(http, args.url, mcp, args.stream))
        except BaseExceptionGroup as group:  # its MCP client closes idle connections before 5 s
            first = group.exceptions[0]
            print(f"floor session failed: {type(first).__name__}: {first}", file=sys.stderr)
    wall = time.perf_counter() - started
    cpu = psutil.Process().cpu_times()
    return {
        "timings": timings,
        "failures": 2 * args.concurrency - len(timings),
        "wall": wall,
        "cpu_s": cpu.user + cpu.system,
    }


def run_level(
    target: str, urls: list[str], mcp_url: str, level: int, stream: bool, pids: list[int]
) -> dict[str, Any]:
    """``level`` runs in flight over the load processes, which take ``urls`` in turn (as a
    Service spreads connections over replicas); completions/s, failures, time to the first text
    (or the answer), the load processes' CPU, and the peak of ``pids``' summed RSS."""
    processes = min(LOAD_PROCESSES, level)
    shares = [level // processes + (i < level % processes) for i in range(processes)]
    peak = 0.0
    sampling = bool(pids)
    stop = threading.Event()

    def sample() -> None:
        nonlocal peak
        while not stop.is_set():
            peak = max(peak, sum(rss_mb(pid) for pid in pids))
            time.sleep(0.05)

    sampler = threading.Thread(target=sample, daemon=True)
    if sampling:
        sampler.start()
    workers = [
        subprocess.Popen(
            [*_load_command(target, urls[i % len(urls)], mcp_url, stream), "--concurrency", str(n)],
            stdout=subprocess.PIPE,
            text=True,
        )
        for i, n in enumerate(shares)
    ]
    results = [json.loads(worker.communicate()[0]) for worker in workers]
    wall = max(r["wall"] for r in results)  # the load itself, not the processes' start-up
    stop.set()
    timings = sorted(t for r in results for t in r["timings"])
    return {
        "completions_per_s": len(timings) / wall,
        "failures": sum(r["failures"] for r in results),
        "p50_ms": statistics.median(timings) * 1000 if timings else float("nan"),
        "p99_ms": timings[min(len(timings) - 1, int(len(timings) * 0.99))] * 1000
        if timings
        else float("nan"),
        "load_cpu_s": sum(r["cpu_s"] for r in results),
        "peak_rss_mb": peak,
    }


def _load_command(target: str, url: str, mcp_url: str, stream: bool) -> list[str]:
    command = [sys.executable, "-m", "bench.sweep", "load", "--target", target, "--url", url]
    return command + ["--mcp", mcp_url] + (["--stream"] if stream else [])


async def _warm(bridges: list[str]) -> None:
    """One run on each replica first: its first run pays for what later runs find ready (the
    server's tool list, the first connections), as the floor's session is opened untimed."""
    async with aiohttp.ClientSession() as session:
        await asyncio.gather(*(toolbridge_run(session, url, stream=False) for url in bridges))


def sweep(args: argparse.Namespace, urls: dict[str, str], replicas: list[tuple[int, str]]) -> int:
    report = Report()
    pids, bridges = [pid for pid, _ in replicas], [url for _, url in replicas]
    asyncio.run(_warm(bridges))
    idle = sum(rss_mb(pid) for pid in pids)
    print(
        f"toolbridge: {len(replicas)} replica(s), RSS idle {idle:.1f} MB in all; tool: "
        f"{TOOL_S:g} s; load processes: up to {LOAD_PROCESSES}, each slot running twice"
    )
    print(
        "| level | streamed | target | completions/s | failed | first text p50 / p99 ms | "
        "load CPU s | toolbridge peak RSS MB |"
    )
    print("|---|---|---|---|---|---|---|---|")
    for level in args.levels:
        for stream in (False, True):
            rows = {
                "floor": run_level("floor", [urls["model"]], urls["modern"], level, stream, []),
                "toolbridge": run_level("toolbridge", bridges, urls["modern"], level, stream, pids),
            }
            for name, row in rows.items():
                rss = f"{row['peak_rss_mb']:.1f}" if name == "toolbridge" else "-"
                print(
                    f"| {level} | {'yes' if stream else 'no'} | {name} | "
                    f"{row['completions_per_s']:.1f} | {row['failures']} | "
                    f"{row['p50_ms']:.0f} / {row['p99_ms']:.0f} | {row['load_cpu_s']:.1f} | {rss} |"
                )
            floor, ours = rows["floor"], rows["toolbridge"]
            what = f"{level} in flight{', streamed' if stream else ''}"
            ratio = ours["completions_per_s"] / floor["completions_per_s"]
            report.figure(f"{what}: completions/s ratio", ratio, "x", ">= 0.8", ratio >= 0.8)
            report.figure(f"{what}: failed runs", ours["failures"], "", "0", ours["failures"] == 0)
            added = ours["p99_ms"] - floor["p99_ms"]
            report.figure(
                f"{what}: first text p99 over the floor's", added, "ms", "<= 50 ms", added <= 50
            )
            if level == max(args.levels) and not stream:
                per_run = (ours["peak_rss_mb"] - idle) * 1024 / level
                print(
                    f"  memory per run in flight at {level}: {per_run:.1f} KB "
                    f"(peak RSS {ours['peak_rss_mb']:.1f} MB - idle {idle:.1f} MB)"
                )
    print(f"{report.missed} target(s) missed" if report.missed else "all targets met")
    return 1 if report.missed else 0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    sub = parser.add_subparsers(dest="command")
    worker = sub.add_parser("load")
    worker.add_argument("--target", choices=["floor", "toolbridge"], required=True)
    worker.add_argument("--url", required=True)
    worker.add_argument("--mcp", required=True)
    worker.add_argument("--concurrency", type=int, required=True)
    worker.add_argument("--stream", action="store_true")
    parser.add_argument(
        "--levels", type=lambda v: [int(x) for x in v.split(",")], default=list(LEVELS)
    )
    parser.add_argument(
        "--replicas",
        type=int,
        default=os.cpu_count() or 1,
        help="toolbridge processes on one Redis (default: one per core, as deployed)",
    )
    parser.add_argument("--settings", type=json.loads, default={}, help="added to its config")
    args = parser.parse_args()
    if args.command == "load":
        print(json.dumps(asyncio.run(load(args))))
        return
    settings = {
        # Every run of the sweep is one key's: its limits must not be what is measured.
        "request_limits": {"max_runs_per_key": 4096, "max_connections_per_key": 4096},
        **args.settings,
    }
    with bench_services(args.replicas, settings=settings) as bench:
        status = sweep(args, bench.urls, [(p.pid, url) for p, url in bench.replicas])
    raise SystemExit(status)


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    main()
