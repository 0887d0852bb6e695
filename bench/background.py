"""``make bench-background``: background responses against plain ones, and resumed streams.

Two toolbridge replicas share one Redis, with the benchmark's backends (``bench/run.py``):

- Time to answer: ``create(background=True)`` (answered ``queued``, the run goes on) against a
  plain stored response (answered when done), the same MCP job, interleaved; p50 and p99.
- Resumed streams: background responses streamed from one replica, the connection dropped
  after a random number of events, the stream resumed on the other replica with
  ``starting_after``; every ``sequence_number`` must be seen exactly once (lost and repeated
  events are counted, and must be 0), and the text must be whole.

Exits 1 when an event was lost or repeated.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import statistics
import time
from typing import Any

import httpx

from bench.run import KEY, SCRIPT, bench_services, responses_job

HEADERS = {"Authorization": f"Bearer {KEY}"}
WORDS = 40


async def answer_ms(http: httpx.AsyncClient, url: str, background: bool) -> float:
    body = {
        "model": "bench",
        "input": SCRIPT,
        "background": background,
        "tools": [{"type": "mcp", "server_label": "demo", "require_approval": "never"}],
    }
    started = time.perf_counter()
    response = await http.post(f"{url}/v1/responses", json=body, headers=HEADERS)
    elapsed = (time.perf_counter() - started) * 1000
    status = response.json()["status"]
    assert status == ("queued" if background else "completed"), response.text
    return elapsed


def p50_p99(samples: list[float]) -> tuple[float, float]:
    samples = sorted(samples)
    return statistics.median(samples), samples[min(len(samples) - 1, int(len(samples) * 0.99))]


async def events(
    http: httpx.AsyncClient, method: str, url: str, body: Any, stop_after: int | None
) -> list[dict[str, Any]]:
    seen: list[dict[str, Any]] = []
    async with http.stream(method, url, json=body, headers=HEADERS) as answer:
        async for line in answer.aiter_lines():
            if line.startswith("data: "):
                seen.append(json.loads(line[6:]))
                if stop_after is not None and len(seen) == stop_after:
                    break  # the connection drops
    return seen


async def resumed_stream(http: httpx.AsyncClient, a: str, b: str, rng: random.Random) -> Any:
    """One streamed background response, dropped and resumed on the other replica; the
    sequence numbers seen, and whether the text came whole."""
    body = {"model": "bench", "input": f"words {WORDS}", "background": True, "stream": True}
    first = await events(http, "POST", f"{a}/v1/responses", body, rng.randint(1, WORDS))
    last = first[-1]["sequence_number"]
    rid = first[0]["response"]["id"]
    rest = await events(
        http, "GET", f"{b}/v1/responses/{rid}?stream=true&starting_after={last}", None, None
    )
    seen = first + rest
    text = "".join(e.get("delta", "") for e in seen if e["type"] == "response.output_text.delta")
    whole = text.split() == [f"w{i}" for i in range(WORDS)]
    return [e["sequence_number"] for e in seen], whole, seen[-1]["type"]


async def measure(args: argparse.Namespace, a: str, b: str) -> int:
    failures = 0
    async with httpx.AsyncClient(timeout=120, limits=httpx.Limits(max_connections=64)) as http:
        warm = responses_job(http, a)
        for _ in range(20):
            await warm()
        background: list[float] = []
        plain: list[float] = []
        for _ in range(args.count):  # interleaved: both see the same machine
            background.append(await answer_ms(http, a, True))
            plain.append(await answer_ms(http, a, False))
        bg, plain_ = p50_p99(background), p50_p99(plain)
        print(f"| create, answered | p50 ms | p99 ms |  ({args.count} each, interleaved)")
        print("|---|---|---|")
        print(f"| background: true (queued) | {bg[0]:.2f} | {bg[1]:.2f} |")
        print(f"| plain stored response (completed) | {plain_[0]:.2f} | {plain_[1]:.2f} |")

        rng = random.Random(args.seed)
        lost = repeated = broken = 0
        gate = asyncio.Semaphore(args.concurrency)

        async def one() -> None:
            nonlocal lost, repeated, broken
            async with gate:
                numbers, whole, last_type = await resumed_stream(http, a, b, rng)
            expected = set(range(numbers[-1] + 1))
            lost += len(expected - set(numbers))
            repeated += len(numbers) - len(set(numbers))
            broken += (not whole) + (last_type != "response.completed")

        await asyncio.gather(*(one() for _ in range(args.streams)))
        print()
        print(f"| resumed streams | {args.streams} (concurrency {args.concurrency}) |")
        print("|---|---|")
        print(f"| events lost | {lost} |")
        print(f"| events repeated | {repeated} |")
        print(f"| text not whole, or not ended by response.completed | {broken} |")
        failures += lost + repeated + broken
    return 1 if failures else 0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--count", type=int, default=200)
    parser.add_argument("--streams", type=int, default=100)
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()
    with bench_services(replicas=2) as bench:
        (_, a), (_, b) = bench.replicas
        code = asyncio.run(measure(args, a, b))
    raise SystemExit(code)


if __name__ == "__main__":
    main()
