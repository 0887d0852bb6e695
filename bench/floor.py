"""``bench.cpu``'s floor in a process of its own: a minimal direct client (httpx to the model,
one persistent ``mcp`` SDK session) and nothing else, as a caller's own program would be.

Measured in the bench's process, among the load generator's clients and garbage, the floor
read 2.8 to 4.1 ms per run, rising from round to round as the other jobs ran; alone it read
2.9 to 3.3 ms (``docs/performance.md``, eleventh session).

``python -m bench.floor --model URL --mcp URL`` warms up, prints ``ready``, then for each line
``RUNS CONCURRENCY`` on stdin runs the floor's job that many times and prints ``done``
(``RUNS CONCURRENCY streamed``: the job with its answer streamed, read line by line). The
bench reads this process's CPU times around each round, as it does toolbridge's.
"""

from __future__ import annotations

import argparse
import asyncio
import sys

import httpx
from mcp import Client

from bench.run import floor_job, run_at

LIMITS = httpx.Limits(max_connections=256, max_keepalive_connections=256, keepalive_expiry=4)


async def serve(model_url: str, mcp_url: str) -> None:
    async with httpx.AsyncClient(timeout=60, limits=LIMITS) as http, Client(mcp_url) as mcp:
        jobs = {streamed: floor_job(http, model_url, mcp, stream=streamed) for streamed in (0, 1)}
        for job in jobs.values():
            await run_at(job, 30, 4)  # warm: the pool, the session, imports
        print("ready", flush=True)
        for line in sys.stdin:  # between rounds nothing runs, so a blocking read is fine
            runs, concurrency, *streamed = line.split()
            await run_at(jobs[streamed == ["streamed"]], int(runs), int(concurrency))
            print("done", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", required=True)
    parser.add_argument("--mcp", required=True)
    args = parser.parse_args()
    asyncio.run(serve(args.model, args.mcp))


if __name__ == "__main__":
    main()
