"""CPU per run: what toolbridge's process spends on each job, against what a minimal direct
client (the floor: httpx to the model, one persistent ``mcp`` SDK session) spends on the same
calls, both measured in the same run from the processes' own CPU times.

A job is run ``runs`` times at ``concurrency``; toolbridge's CPU (user + system, its process and
any children: stdio servers are not used here) is read before and after, and divided by the
runs. The floor runs in a process of its own (``bench/floor.py``), read the same way: the
client work a direct caller would do, without the load generator's. ``python -m bench.cpu``
prints the table.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import subprocess
import sys
import time
from asyncio.subprocess import PIPE
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import httpx
import psutil

from app.store.embedded import free_port
from bench.run import (
    KEY,
    SCRIPT,
    Bench,
    Report,
    bench_services,
    expected,
    first_text_after,
    run_at,
)

HEADERS = {"Authorization": f"Bearer {KEY}"}
FLOOR = "floor (direct client)"
MINIMAL = "minimal service, chat (bench/minimal.py)"
MINIMAL_STREAMED = "minimal service, responses streamed (bench/minimal.py)"
LIMITS = httpx.Limits(max_connections=256, max_keepalive_connections=256, keepalive_expiry=4)
Job = Callable[[], Awaitable[Any]]
TOOL_JOBS = ("chat", "chat streamed", "responses", "responses streamed")
STREAMED_JOBS = ("chat streamed", "responses streamed")


def history(messages: int) -> list[dict[str, Any]]:
    """A chat of ``messages`` earlier messages (user and assistant in turn), then the job."""
    earlier = [
        {
            "role": "user" if i % 2 == 0 else "assistant",
            "content": f"Earlier message {i}: " + "lorem ipsum dolor sit amet " * 8,
        }
        for i in range(messages)
    ]
    return [*earlier, {"role": "user", "content": SCRIPT}]


def chat_job(http: httpx.AsyncClient, url: str, *, stream: bool, earlier: int = 0) -> Job:
    body = {
        "model": "bench",
        "messages": history(earlier),
        "tools": [{"type": "mcp", "server_label": "demo"}],
        "stream": stream,
    }
    endpoint = f"{url}/v1/chat/completions"

    async def job() -> None:
        if stream:
            await first_text_after(http, endpoint, body, 0.0, HEADERS)
            return
        answer = (await http.post(endpoint, json=body, headers=HEADERS)).json()
        assert answer["choices"][0]["message"]["content"] == expected(), answer

    return job


def no_tools_job(http: httpx.AsyncClient, url: str) -> Job:
    body = {"model": "bench", "messages": [{"role": "user", "content": "say hello"}]}

    async def job() -> None:
        answer = (await http.post(f"{url}/v1/chat/completions", json=body, headers=HEADERS)).json()
        assert answer["choices"][0]["message"]["content"] == "hello", answer

    return job


def responses_job(http: httpx.AsyncClient, url: str, *, stream: bool) -> Job:
    body = {
        "model": "bench",
        "input": SCRIPT,
        "stream": stream,
        "tools": [{"type": "mcp", "server_label": "demo", "require_approval": "never"}],
    }
    endpoint = f"{url}/v1/responses"

    async def job() -> None:
        if stream:
            async with http.stream("POST", endpoint, json=body, headers=HEADERS) as answer:
                answer.raise_for_status()
                last = ""
                async for line in answer.aiter_lines():
                    last = line or last
            completed = json.loads(last.removeprefix("data: "))  # the last event's data
            assert completed["type"] == "response.completed", last
            assert completed["response"]["output"][-1]["content"][0]["text"] == expected(), last
            return
        output = (await http.post(endpoint, json=body, headers=HEADERS)).json()["output"]
        assert output[-1]["content"][0]["text"] == expected(), output

    return job


CHAIN_TURNS = 120


def chain_job(http: httpx.AsyncClient, url: str, *, turns: int) -> Job:
    """A response (no tools, not stored) continuing a chain of ``turns`` stored responses by
    ``previous_response_id``; the chain is made by the job's first run."""
    endpoint = f"{url}/v1/responses"
    made: list[str | None] = []
    making = asyncio.Lock()

    async def last_of_chain() -> str | None:
        async with making:
            if not made:
                previous = None
                for turn in range(turns):
                    said = f"turn {turn}" + " lorem ipsum dolor sit amet" * 8
                    body: dict[str, Any] = {"model": "bench", "input": f"say {said}"}
                    body["previous_response_id"] = previous
                    answer = (await http.post(endpoint, json=body, headers=HEADERS)).json()
                    assert answer["output"][-1]["content"][0]["text"] == said, answer
                    previous = answer["id"]
                made.append(previous)
        return made[0]

    async def job() -> None:
        body = {
            "model": "bench",
            "input": "say next",
            "previous_response_id": await last_of_chain(),
            "store": False,
        }
        output = (await http.post(endpoint, json=body, headers=HEADERS)).json()["output"]
        assert output[-1]["content"][0]["text"] == "next", output

    return job


WORDS = (10, 210)
"""The two streamed answers whose difference is the CPU of 200 streamed tokens."""


def words_job(http: httpx.AsyncClient, url: str, words: int) -> Job:
    """A streamed chat (no tools) whose answer is ``words`` words, a chunk each, as a provider
    streams a token a chunk: what each streamed token costs, which the tool jobs' short
    answers hardly show."""
    body = {"model": "bench", "messages": [{"role": "user", "content": f"words {words}"}]}
    expected = " ".join(f"w{i}" for i in range(words))

    async def job() -> None:
        text: list[str] = []
        last = ""
        async with http.stream(
            "POST", f"{url}/v1/chat/completions", json={**body, "stream": True}, headers=HEADERS
        ) as answer:
            answer.raise_for_status()
            async for line in answer.aiter_lines():
                last = line or last
                if line.startswith("data: {"):
                    text.append(json.loads(line[6:])["choices"][0]["delta"].get("content") or "")
        assert "".join(text) == expected, text
        assert last == "data: [DONE]", last

    return job


def toolbridge_jobs(http: httpx.AsyncClient, url: str) -> dict[str, Job]:
    """Every job measured through toolbridge, by name."""
    return {
        "chat": chat_job(http, url, stream=False),
        "chat streamed": chat_job(http, url, stream=True),
        "responses": responses_job(http, url, stream=False),
        "responses streamed": responses_job(http, url, stream=True),
        "chat, 2 earlier messages": chat_job(http, url, stream=False, earlier=2),
        "chat, 240 earlier messages": chat_job(http, url, stream=False, earlier=240),
        "chat, no tools": no_tools_job(http, url),
        "responses, no earlier turn": chain_job(http, url, turns=0),
        f"responses, {CHAIN_TURNS} earlier turns": chain_job(http, url, turns=CHAIN_TURNS),
        **{f"chat streamed, {n} words": words_job(http, url, n) for n in WORDS},
    }


def cpu_s(process: psutil.Process) -> float:
    times = process.cpu_times()
    return times.user + times.system + times.children_user + times.children_system


Rounds = Callable[[int], Awaitable[None]]
"""Runs a job that many times (at the bench's concurrency)."""
WARM_RUNS = 32


async def cpu_ms_per_run(process: psutil.Process, job: Job, runs: int, concurrency: int) -> float:
    return await cpu_ms_per_round(process, lambda: run_at(job, runs, concurrency), runs)


async def cpu_ms_per_round(
    process: psutil.Process, round_: Callable[[], Awaitable[None]], runs: int
) -> float:
    before = cpu_s(process)
    await round_()
    return (cpu_s(process) - before) * 1000 / runs


class FloorProcess:
    """``bench/floor.py``, started on the bench's backends: one round of the floor at a time."""

    def __init__(self, process: asyncio.subprocess.Process) -> None:
        self.process = process
        self.cpu = psutil.Process(process.pid)

    @classmethod
    async def start(cls, model_url: str, mcp_url: str) -> FloorProcess:
        command = ["-m", "bench.floor", "--model", model_url, "--mcp", mcp_url]
        process = await asyncio.create_subprocess_exec(
            sys.executable, *command, stdin=PIPE, stdout=PIPE
        )
        floor = cls(process)
        await floor._answer("ready")
        return floor

    async def round(self, runs: int, concurrency: int, *, streamed: bool = False) -> None:
        """``runs`` of the floor's job (``streamed``: with its answer streamed)."""
        assert self.process.stdin is not None
        self.process.stdin.write(f"{runs} {concurrency}{' streamed' * streamed}\n".encode())
        await self._answer("done")

    async def _answer(self, expected: str) -> None:
        assert self.process.stdout is not None
        line = (await asyncio.wait_for(self.process.stdout.readline(), 120)).decode().strip()
        if line != expected:
            raise RuntimeError(f"bench/floor.py answered {line!r}, not {expected!r}")

    async def stop(self) -> None:
        assert self.process.stdin is not None
        self.process.stdin.close()
        await self.process.wait()


@dataclass
class Figures:
    """Each job's CPU ms per run, a figure a round, with the floor's measured just before it."""

    samples: dict[str, list[float]] = field(default_factory=dict)
    floors: dict[str, list[float]] = field(default_factory=dict)
    streaming_floors: dict[str, list[float]] = field(default_factory=dict)
    """For the streamed jobs: a floor that streams its answer too, measured just before."""

    def ms(self, name: str) -> float:
        return statistics.median(self.samples[name])

    def floor_ms(self) -> float:
        return statistics.median(ms for floors in self.floors.values() for ms in floors)

    def ratio(self, name: str, to: str | None = None, *, streaming: bool = False) -> float:
        """The median of a round's ratio of ``name`` to the floor (the streaming floor, or job
        ``to``) measured next to it: the machine's speed moves by a third between rounds, and
        both with it."""
        floors = self.streaming_floors if streaming else self.floors
        against = floors[name] if to is None else self.samples[to]
        return statistics.median(a / b for a, b in zip(self.samples[name], against, strict=True))


async def measure_jobs(
    http: httpx.AsyncClient,
    bridge: str,
    toolbridge: psutil.Process,
    model_url: str,
    mcp_url: str,
    *,
    runs: int,
    concurrency: int,
    rounds: int,
    minimal: tuple[psutil.Process, str] | None = None,
) -> Figures:
    """CPU ms per run of every job (toolbridge's process; the floor: ``bench/floor.py``'s; the
    minimal service, if given: its process and URL)."""
    jobs = toolbridge_jobs(http, bridge)
    for job in jobs.values():  # warm caches, pools and imports
        await run_at(job, 30, 4)

    def rounds_of(job: Job) -> Rounds:
        return lambda count: run_at(job, count, concurrency)

    floor = await FloorProcess.start(model_url, mcp_url)
    measured: dict[str, tuple[psutil.Process, Rounds]] = {
        name: (toolbridge, rounds_of(job)) for name, job in jobs.items()
    }
    if minimal is not None:
        process, url = minimal
        # Its own client: toolbridge's CPU per run was 0.5 ms higher with the client shared
        # (a slower client sends toolbridge less at once, and each wake-up serves fewer runs).
        minimal_http = httpx.AsyncClient(timeout=60, limits=LIMITS)
        for name, minimal_job in (
            (MINIMAL, chat_job(minimal_http, url, stream=False)),
            (MINIMAL_STREAMED, responses_job(minimal_http, url, stream=True)),
        ):
            await run_at(minimal_job, 30, 4)
            measured[name] = (process, rounds_of(minimal_job))

    async def cpu_ms(process: psutil.Process, round_: Rounds) -> float:
        # Unmeasured first: the other jobs ran for seconds meanwhile, and idle keep-alive
        # connections closed; each job is measured as it runs in a steady stream.
        await round_(WARM_RUNS)
        return await cpu_ms_per_round(process, lambda: round_(runs), runs)

    figures = Figures(
        {name: [] for name in measured},
        {name: [] for name in measured},
        {name: [] for name in STREAMED_JOBS},
    )
    for _ in range(rounds):
        for name, (process, round_) in measured.items():
            figures.floors[name].append(
                await cpu_ms(floor.cpu, lambda count: floor.round(count, concurrency))
            )
            if name in STREAMED_JOBS:
                figures.streaming_floors[name].append(
                    await cpu_ms(
                        floor.cpu, lambda count: floor.round(count, concurrency, streamed=True)
                    )
                )
            figures.samples[name].append(await cpu_ms(process, round_))
    await floor.stop()
    if minimal is not None:
        await minimal_http.aclose()
    if os.environ.get("BENCH_CPU_SAMPLES"):
        for name in measured:
            print(
                name,
                [round(v, 2) for v in figures.samples[name]],
                "floor",
                [round(v, 2) for v in figures.floors[name]],
            )
    return figures


def report(figures: Figures) -> int:
    """The targets (issue 25), each with its figure; how many were missed."""
    targets = Report()
    for name in TOOL_JOBS:
        ratio = figures.ratio(name)
        targets.figure(
            f"CPU per run, {name}: ratio to the floor", ratio, "x", "<= 0.5", ratio <= 0.5
        )
    for name in STREAMED_JOBS:  # what a direct client that streams its answer spends
        ratio = figures.ratio(name, streaming=True)
        label = f"CPU per run, {name}: ratio to a floor streaming its answer (no target)"
        print(f"  {label}: {ratio:.2f}x")
    for name, bare in (("chat", MINIMAL), ("responses streamed", MINIMAL_STREAMED)):
        if bare in figures.samples:  # what toolbridge spends beyond the bare stack's exchanges
            own = figures.ratio(name) - figures.ratio(bare)
            label = f"CPU per run, {name}: toolbridge's own (over the minimal service, no target)"
            print(f"  {label}: {own:.2f}x the floor")
    no_tools = figures.ms("chat, no tools")
    targets.figure("CPU per run, chat without tools", no_tools, "ms", "<= 1.2 ms", no_tools <= 1.2)
    growth = figures.ratio("chat, 240 earlier messages", "chat, 2 earlier messages")
    targets.figure("CPU per run, 240 earlier messages over 2", growth, "x", "<= 1.3", growth <= 1.3)
    chain = figures.ratio(f"responses, {CHAIN_TURNS} earlier turns", "responses, no earlier turn")
    print(f"  CPU per run, {CHAIN_TURNS} earlier turns over none (no target): {chain:.2f}x")
    few, many = (f"chat streamed, {n} words" for n in WORDS)
    per_token = (figures.ms(many) - figures.ms(few)) * 1000 / (WORDS[1] - WORDS[0])
    print(f"  CPU per streamed token, chat (no target): {per_token:.1f} µs")
    return targets.missed


async def main_async(
    args: argparse.Namespace,
    urls: dict[str, str],
    bridge: str,
    pid: int,
    minimal: tuple[psutil.Process, str] | None = None,
) -> int:
    async with httpx.AsyncClient(timeout=60, limits=LIMITS) as http:
        figures = await measure_jobs(
            http,
            bridge,
            psutil.Process(pid),
            urls["model"],
            urls["modern"],
            runs=args.runs,
            concurrency=args.concurrency,
            rounds=args.rounds,
            minimal=minimal,
        )
    print(
        f"| job | CPU ms per run | over the floor |  ({args.runs} runs at concurrency "
        f"{args.concurrency}, {args.rounds} rounds, medians; the floor measured before each job)"
    )
    print("|---|---|---|")
    print(f"| {FLOOR} | {figures.floor_ms():.2f} | |")
    for name in figures.samples:
        print(f"| {name} | {figures.ms(name):.2f} | {figures.ratio(name):.2f}x |")
    print("targets")
    missed = report(figures)
    print(f"{missed} target(s) missed" if missed else "all targets met")
    return 1 if missed else 0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=int, default=400)
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--settings", default="{}", help="JSON added to toolbridge's config")
    args = parser.parse_args()
    with bench_services(settings=json.loads(args.settings)) as bench, minimal_service(bench) as m:
        [(process, bridge)] = bench.replicas
        status = asyncio.run(main_async(args, bench.urls, bridge, process.pid, m))
    raise SystemExit(status)


@contextmanager
def minimal_service(bench: Bench) -> Iterator[tuple[psutil.Process, str]]:
    """``bench/minimal.py`` on the bench's backends and Redis: its process and URL."""
    port = free_port()
    command = [sys.executable, "-m", "bench.minimal", "--port", str(port)]
    command += ["--model", bench.urls["model"], "--mcp", bench.urls["modern"]]
    process = subprocess.Popen([*command, "--redis", bench.redis_url])
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while not _answers(url):
            if time.monotonic() > deadline:
                raise RuntimeError("bench/minimal.py did not start")
            time.sleep(0.05)
        yield psutil.Process(process.pid), url
    finally:
        process.terminate()
        process.wait(30)


def _answers(url: str) -> bool:
    try:
        return httpx.get(url, timeout=1).status_code == 200
    except httpx.HTTPError:
        return False


if __name__ == "__main__":
    main()
