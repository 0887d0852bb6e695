"""Where toolbridge's CPU goes in one of ``bench.cpu``'s jobs, sampled in the serving process.

``python -m bench.profile "chat" --runs 3000`` serves the bench (its backends, a Redis, one
toolbridge with ``bench/sampler`` on its ``PYTHONPATH``), warms the job up, samples the serving
process's stacks over ``--runs`` runs at concurrency 16 (``bench/sampler/sitecustomize.py``:
one sample per tick of CPU), and prints the shares of samples: by package and by function
where the CPU was spent (self), and by function of ``app/`` with everything it called
(inclusive). ``--under NAME`` prints what the function NAME's samples went to, one frame down.
A share is of toolbridge's CPU in the job (the bench's ``bench.cpu`` gives the ms per run)."""

from __future__ import annotations

import argparse
import asyncio
import os
import pickle
import signal
import tempfile
from collections import Counter
from pathlib import Path

import httpx

from bench.cpu import LIMITS, toolbridge_jobs
from bench.run import bench_services, run_at

Frame = tuple[str, int, str]


def _short(frame: Frame) -> str:
    path = frame[0].split("site-packages/")[-1].split(f"{Path.cwd()}/")[-1]
    return f"{path.split('python3.11/')[-1]}:{frame[1]}:{frame[2]}"


def _package(path: str) -> str:
    if "site-packages/" in path:
        return path.split("site-packages/")[1].split("/")[0]
    if "/app/" in path:
        return "app/" + "/".join(path.split("/app/")[1].split("/")[:-1] or ["."])
    return "stdlib:" + path.split("/")[-1]


def report(stacks: dict[tuple[Frame, ...], int], under: str | None = None, top: int = 30) -> str:
    total = sum(stacks.values()) or 1
    packages: Counter[str] = Counter()
    selves: Counter[str] = Counter()
    inclusive: Counter[str] = Counter()
    below: Counter[str] = Counter()
    for stack, count in stacks.items():
        packages[_package(stack[0][0])] += count
        selves[_short(stack[0])] += count
        names = [_short(frame) for frame in stack]
        for name in set(names):
            inclusive[name] += count
        if under is not None:
            found = [i for i, name in enumerate(names) if under in name]
            if found:
                below[names[found[-1] - 1] if found[-1] else "(self)"] += count

    def lines(counts: Counter[str], keep: int, only: str = "") -> list[str]:
        picked = [(n, c) for n, c in counts.most_common() if only in n][:keep]
        return [f"{100 * c / total:5.1f}%  {n}" for n, c in picked]

    parts = [f"{total} samples", "== self, by package", *lines(packages, 20)]
    parts += ["== self, by function", *lines(selves, top)]
    parts += ["== inclusive, app/", *lines(inclusive, top * 2, "app/")]
    if under is not None:
        parts += [f"== under {under}", *lines(below, top)]
    return "\n".join(parts)


async def _sample(job_name: str, runs: int, url: str, pid: int) -> None:
    async with httpx.AsyncClient(timeout=60, limits=LIMITS) as http:
        job = toolbridge_jobs(http, url)[job_name]
        await run_at(job, 300, 16)  # warm: sessions, caches, the collector's first passes
        os.kill(pid, signal.SIGUSR1)
        await run_at(job, runs, 16)
        os.kill(pid, signal.SIGUSR2)
        await asyncio.sleep(1)  # the process writes the samples


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("job", help="one of bench.cpu's jobs, e.g. 'chat' or 'responses streamed'")
    parser.add_argument("--runs", type=int, default=3000)
    parser.add_argument("--under", help="also show where this function's samples went")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        samples = Path(tmp) / "samples.pickle"
        sampler = str(Path(__file__).parent / "sampler")
        os.environ["PYTHONPATH"] = os.pathsep.join(
            p for p in (sampler, os.environ.get("PYTHONPATH")) if p
        )
        os.environ["BENCH_SAMPLES"] = str(samples)
        with bench_services() as bench:
            [(process, url)] = bench.replicas
            asyncio.run(_sample(args.job, args.runs, url, process.pid))
        print(report(pickle.loads(samples.read_bytes()), args.under))


if __name__ == "__main__":
    main()
