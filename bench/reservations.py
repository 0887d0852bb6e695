"""Budget reservations per second on one Redis node and on a three-primary Redis Cluster.

``python -m bench.reservations`` (``make bench-budget``): each cycle is what one model call
costs the ledger (reserve what it may cost, then settle the real cost), run by concurrent
workers against the same key scopes, as replicas would. Every budget key shares one hash tag,
so on a cluster all of them live on one primary: this shows what that leaves.
"""

from __future__ import annotations

import argparse
import asyncio
import tempfile
import time
import uuid
from pathlib import Path

from app.budget.ledger import Estimate, Ledger, Scope
from app.store.connect import connect, warm_up
from app.store.embedded import start_embedded_cluster, start_embedded_redis


async def cycles_per_second(url: str, *, cluster: bool, workers: int, seconds: float) -> float:
    redis = connect(url, cluster=cluster)
    await warm_up(redis)
    ledger = Ledger(redis, f"bench-{uuid.uuid4().hex[:6]}:", hold_ttl_s=60)
    scopes = [
        Scope("key:k:total", 1e9),
        Scope("key:k:day:2026-11-23", 1e9, 172_800),
        Scope("key:k:month:2026-11", 1e9, 2_764_800),
        Scope(f"run:{uuid.uuid4().hex}", 1e9, 172_800),
    ]
    cost = Estimate(input_usd=1e-4, usd_per_output_token=1e-6, max_tokens=4096, min_tokens=16)
    done = 0
    deadline = time.monotonic() + seconds

    async def worker() -> None:
        nonlocal done
        while time.monotonic() < deadline:
            hold = await ledger.reserve(scopes, cost)
            hold.cost_usd = 2e-4
            await ledger.finish(hold)
            done += 1

    started = time.monotonic()
    await asyncio.gather(*(worker() for _ in range(workers)))
    elapsed = time.monotonic() - started
    await redis.aclose()
    return done / elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--workers", type=int, default=32)
    parser.add_argument("--seconds", type=float, default=5.0)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as workdir:
        node = start_embedded_redis(Path(workdir) / "node", persist=False)
        cluster = start_embedded_cluster(Path(workdir) / "cluster")
        try:
            for name, url, is_cluster in (
                ("one node", node.url, False),
                ("cluster (3 primaries)", cluster.url, True),
            ):
                rate = asyncio.run(
                    cycles_per_second(
                        url, cluster=is_cluster, workers=args.workers, seconds=args.seconds
                    )
                )
                print(f"{name:24} {rate:8.0f} reserve+settle cycles/s ({args.workers} workers)")
        finally:
            node.stop()
            cluster.stop()


if __name__ == "__main__":
    main()
