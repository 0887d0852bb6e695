"""CPU per run of this checkout against another revision, on one machine at one time.

``python -m bench.compare REV`` checks ``REV`` out in a temporary git worktree, starts one
toolbridge from it and one from this checkout on the same backends and Redis, and runs
``bench.cpu``'s jobs through both: ``--rounds`` rounds of ``--runs`` runs each, the two in turn
(the order flips every round), each process's CPU per run, the median. Figures that move 10-20 %
from one sitting to the next on a shared machine move together here: two copies of the same
code measured this way differ by about 3 %. It prints each job with both figures and their
ratio; a before/after table for a change comes from this, not from two separate runs.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import subprocess
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import psutil

from app.store.embedded import start_embedded_redis
from bench.cpu import LIMITS, Job, cpu_ms_per_run, toolbridge_jobs
from bench.run import run_at, start_backends, start_toolbridge

HERE = Path(__file__).resolve().parent.parent


@contextmanager
def worktree(revision: str) -> Iterator[Path]:
    """``revision`` checked out in a temporary directory, removed afterwards."""
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "checkout"
        git = ["git", "-C", str(HERE), "worktree"]
        subprocess.run([*git, "add", "--detach", str(path), revision], check=True)
        try:
            yield path
        finally:
            subprocess.run([*git, "remove", "--force", str(path)], check=True)


async def compare(
    targets: dict[str, tuple[psutil.Process, str]], runs: int, rounds: int
) -> dict[str, dict[str, float]]:
    """Median CPU ms per run of every job, per target."""
    async with httpx.AsyncClient(timeout=60, limits=LIMITS) as http:
        by_job: dict[str, dict[str, Job]] = {}
        for target, (_, url) in targets.items():
            for name, job in toolbridge_jobs(http, url).items():
                by_job.setdefault(name, {})[target] = job
                await run_at(job, 30, 4)  # warm caches, pools and imports
        samples: dict[str, dict[str, list[float]]] = {n: {t: [] for t in targets} for n in by_job}
        for round_ in range(rounds):
            for name, per_target in by_job.items():
                order = list(targets) if round_ % 2 == 0 else list(reversed(targets))
                for target in order:
                    process = targets[target][0]
                    cpu = await cpu_ms_per_run(process, per_target[target], runs, 16)
                    samples[name][target].append(cpu)
    return {n: {t: statistics.median(v) for t, v in s.items()} for n, s in samples.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("revision", help="what to compare this checkout with (e.g. HEAD~3)")
    parser.add_argument("--runs", type=int, default=300)
    parser.add_argument("--rounds", type=int, default=6)
    args = parser.parse_args()
    with worktree(args.revision) as before, tempfile.TemporaryDirectory() as tmp:
        redis = start_embedded_redis(Path(tmp) / "redis", persist=False)
        backends, urls = start_backends()
        started: list[subprocess.Popen[bytes]] = []
        try:
            targets: dict[str, tuple[psutil.Process, str]] = {}
            for target, source in ((args.revision, before), ("this checkout", HERE)):
                workdir = Path(tmp) / str(len(targets))
                workdir.mkdir()
                process, url, _ = start_toolbridge(urls, redis.url, workdir, source=source)
                started.append(process)
                targets[target] = (psutil.Process(process.pid), url)
            figures = asyncio.run(compare(targets, args.runs, args.rounds))
        finally:
            for process in started:
                process.terminate()
                process.wait(30)
            backends.terminate()
            redis.stop()
    print(f"| job | {args.revision} (ms) | this checkout (ms) | ratio |")
    print("|---|---|---|---|")
    for name, by_target in figures.items():
        old, new = by_target[args.revision], by_target["this checkout"]
        print(f"| {name} | {old:.2f} | {new:.2f} | {new / old:.2f}x |")


if __name__ == "__main__":
    main()
