"""The Redis budget ledger: atomic holds, settlement, release, expiry (real Redis)."""

from __future__ import annotations

import asyncio
import random
import signal
import subprocess
import sys
import uuid
from pathlib import Path

import pytest

from app.budget.ledger import Ledger, Scope
from app.errors import BudgetExceeded, StoreUnavailable
from app.store.connect import RedisClient, connect
from app.store.embedded import start_embedded_redis
from tests.conftest import CLUSTER, redis_client
from tests.fixtures.waiting import wait_until


async def ledger_for(redis_url: str, hold_ttl_s: float = 60.0) -> tuple[Ledger, RedisClient, str]:
    redis = await redis_client(redis_url)
    prefix = f"tb-ledger-{uuid.uuid4().hex[:8]}:"
    return Ledger(redis, prefix, hold_ttl_s=hold_ttl_s), redis, prefix


def test_reserve_settle_release(redis_url: str) -> None:
    async def scenario() -> None:
        ledger, redis, _ = await ledger_for(redis_url)
        scopes = [Scope("key:k:total", 2.0), Scope("run:r", 0.7)]
        first = await ledger.reserve(scopes, 0.6)
        with pytest.raises(BudgetExceeded) as caught:
            await ledger.reserve(scopes, 0.6)  # 0.6 is held: no room for another
        assert caught.value.scope == "run:r"
        first.cost_usd = 0.1
        await ledger.finish(first)
        (total, run) = await ledger.status(scopes)
        assert (total.spent_usd, total.held_usd, run.remaining_usd) == (0.1, 0.0, 0.6)
        with pytest.raises(RuntimeError):
            async with ledger.hold(scopes, 0.5):
                raise RuntimeError("the model call failed")
        assert (await ledger.status(scopes))[0].held_usd == 0.0  # released, not spent
        await redis.aclose()

    asyncio.run(scenario())


def test_a_settlement_sent_twice_is_charged_once(redis_url: str) -> None:
    """A cluster client sends a command again after a connection error (seen: 402 INCRs for
    400): the second settlement of a hold finds it gone and charges nothing."""

    async def scenario() -> None:
        ledger, redis, _ = await ledger_for(redis_url)
        scopes = [Scope("key:k:total", 2.0)]
        hold = await ledger.reserve(scopes, 0.5)
        hold.cost_usd = 0.2
        await ledger.finish(hold)
        await ledger.finish(hold)
        [total] = await ledger.status(scopes)
        assert (total.spent_usd, total.held_usd) == (0.2, 0.0)
        await redis.aclose()

    asyncio.run(scenario())


def test_a_reservation_settles_the_earlier_holds_in_its_scopes(redis_url: str) -> None:
    """A run's turn settles the turn before it in the same script (one round trip fewer);
    a hold in other scopes is left alone, and a refused reservation still settles."""

    async def scenario() -> None:
        ledger, redis, _ = await ledger_for(redis_url)
        scopes = [Scope("key:k:total", 1.0), Scope("run:r", 1.0)]
        other = [Scope("server:s", 1.0)]
        earlier = [await ledger.reserve(scopes, 0.4), await ledger.reserve(other, 0.3)]
        earlier[0].cost_usd, earlier[1].cost_usd = 0.1, 0.2
        pending = list(earlier)
        second = await ledger.reserve(scopes, 0.5, settling=pending)
        assert pending == [earlier[1]]  # only the hold in the same scopes was settled
        total, run = await ledger.status(scopes)
        assert (total.spent_usd, total.held_usd, total.holds) == (0.1, 0.5, 1)
        assert (await ledger.status(other))[0].held_usd == 0.3
        second.cost_usd = 0.5
        with pytest.raises(BudgetExceeded):
            await ledger.reserve(scopes, 0.9, settling=[second])  # 0.4 left after settling
        total, run = await ledger.status(scopes)
        assert (total.spent_usd, total.held_usd, run.spent_usd) == (0.6, 0.0, 0.6)
        await ledger.finish(second)  # sent again: already settled, charged nothing more
        assert (await ledger.status(scopes))[0].spent_usd == 0.6
        await redis.aclose()

    asyncio.run(scenario())


def test_keys_without_limits_keep_their_holds_for_the_next_reservation(redis_url: str) -> None:
    async def scenario() -> None:
        ledger, redis, _ = await ledger_for(redis_url)
        unlimited, limited = [Scope("key:u:total")], [Scope("key:l:total", 5.0)]
        holds = [await ledger.reserve(unlimited, 0.2), await ledger.reserve(limited, 0.2)]
        for hold in holds:
            hold.cost_usd = 0.1
        pending = list(holds)
        await ledger.finish_all(pending, keep_unlimited=True)
        assert pending == [holds[0]]
        assert (await ledger.status(limited))[0].spent_usd == 0.1
        await ledger.finish_all(pending)
        assert pending == [] and (await ledger.status(unlimited))[0].spent_usd == 0.1
        await redis.aclose()

    asyncio.run(scenario())


def test_later_calls_without_a_limit_ride_on_the_first_hold(redis_url: str) -> None:
    """Without a limit, a run's later calls reserve nothing (no round trip: a Redis that stops
    answering after the first hold is not asked); all are charged when the run settles, once
    each, even if that is sent twice or the first hold lapsed during a long run."""

    async def scenario() -> None:
        ledger, redis, _ = await ledger_for(redis_url, hold_ttl_s=1.0)
        scopes = [Scope("key:u:total"), Scope("key:u:day:x", ttl_s=3600)]
        first = await ledger.reserve(scopes, 0.2)
        first.cost_usd = 0.1
        pending = [first]
        nowhere = connect("redis://127.0.0.1:1", cluster=False, ca_file=None)
        offline = Ledger(nowhere, "tb-nowhere:", hold_ttl_s=60)  # any round trip fails
        riders = [await offline.reserve(scopes, 0.3, settling=pending) for _ in range(2)]
        await nowhere.aclose()
        assert [rider.reserved for rider in riders] == [False, False]
        assert (await ledger.status(scopes))[0].holds == 1  # only the first is held
        riders[0].cost_usd, riders[1].cost_usd = 0.25, 0.0
        pending += riders
        await ledger.finish_all(pending, keep_unlimited=True)  # mid-run: kept for the end
        assert len(pending) == 3
        await asyncio.sleep(1.2)  # the first hold lapses: its call is charged all the same
        again = list(pending)
        await ledger.finish_all(pending)
        await ledger.finish_all(again)  # sent again: charged nothing more
        for status in await ledger.status(scopes):
            assert (status.spent_usd, status.held_usd, status.holds) == (0.35, 0.0, 0)
        limited = [Scope("key:l:total", 5.0)]
        held = await ledger.reserve(limited, 0.2)
        assert (await ledger.reserve(limited, 0.2, settling=[held])).reserved  # a limit holds
        await redis.aclose()

    asyncio.run(scenario())


def test_a_call_without_a_limit_rides_on_a_recent_answer_until_one_fails(
    redis_url: str, tmp_path: Path
) -> None:
    """Without a limit, a run's first call holds nothing when Redis answered a budget script
    of this replica within ``ANSWERED_S``: no round trip, and still charged at the end, with the
    period's expiry a hold would have given. A failed script ends that: the next call holds
    (fails closed), even within the window."""

    async def scenario() -> None:
        ledger, redis, prefix = await ledger_for(redis_url)
        scopes = [Scope("key:u:total"), Scope("key:u:day:x", ttl_s=3600)]
        first = await ledger.reserve(scopes, 0.2)
        assert first.reserved  # nothing answered yet: it holds
        first.cost_usd = 0.1
        await ledger.finish_all([first])
        rider = await ledger.reserve(scopes, 0.2)  # a new run, right after an answer
        assert not rider.reserved
        assert (await ledger.status(scopes))[0].holds == 0
        rider.cost_usd = 0.25
        await ledger.finish_all([rider])
        for status in await ledger.status(scopes):
            assert (status.spent_usd, status.held_usd) == (0.35, 0.0)
        day_spent = f"{{{prefix}budget}}:key:u:day:x:spent"
        assert 3500 < await redis.ttl(day_spent) <= 3600
        assert await redis.ttl(f"{{{prefix}budget}}:key:u:total:spent") == -1  # kept
        await redis.aclose()

        lost = start_embedded_redis(tmp_path / "lost", persist=False)
        client = connect(lost.url, cluster=False, ca_file=None)
        try:
            ledger = Ledger(client, "tb-lost:", hold_ttl_s=60)
            await ledger.status(scopes)  # an answer
            riding = await ledger.reserve(scopes, 0.2)
            assert not riding.reserved
            riding.cost_usd = 0.1
            lost.stop()
            with pytest.raises(StoreUnavailable):
                await ledger.finish_all([riding])  # the run that rode fails as it settles
            with pytest.raises(StoreUnavailable):
                await ledger.reserve(scopes, 0.2)  # the next holds again: fails closed
        finally:
            await client.aclose()
            lost.stop()  # no redis-server left behind if an assertion failed first

    asyncio.run(scenario())


def test_without_a_limit_the_check_before_a_run_costs_nothing(redis_url: str) -> None:
    def not_estimated() -> float:
        raise AssertionError("nothing to pay against: no estimate")

    async def scenario() -> None:
        nowhere = connect("redis://127.0.0.1:1", cluster=False, ca_file=None)
        ledger = Ledger(nowhere, "tb-nowhere:", hold_ttl_s=60)  # any round trip fails
        await ledger.ensure_available([Scope("key:free:total"), Scope("run:r")], not_estimated)
        with pytest.raises(StoreUnavailable):
            await ledger.ensure_available([Scope("key:capped:total", 1.0)], lambda: 0.1)
        await nowhere.aclose()

    asyncio.run(scenario())


def test_concurrent_runs_never_overspend(redis_url: str) -> None:
    """50 runs race for a $1 budget, each holding $0.05 and spending up to that."""

    async def scenario() -> None:
        ledger, redis, _ = await ledger_for(redis_url)
        scopes = [Scope("key:k:total", 1.0)]
        refused = 0

        async def one_run() -> None:
            nonlocal refused
            for _ in range(3):
                try:
                    async with ledger.hold(scopes, 0.05) as hold:
                        await asyncio.sleep(random.uniform(0, 0.02))
                        hold.cost_usd = random.uniform(0.01, 0.05)
                except BudgetExceeded:
                    refused += 1

        await asyncio.gather(*(one_run() for _ in range(50)))
        (status,) = await ledger.status(scopes)
        assert status.spent_usd <= 1.0 + 1e-9
        assert status.held_usd == 0.0
        assert refused > 0  # the budget really was contended
        await redis.aclose()

    asyncio.run(scenario())


HOLD_TTL_S = 5.0
"""Long enough for the checks after the kill to run well before the hold lapses."""
HOLDER = """
import asyncio, sys, time
from app.budget.ledger import Ledger, Scope
from app.store.connect import connect
async def main():
    redis = connect(sys.argv[1], cluster=sys.argv[3] == "cluster")
    ledger = Ledger(redis, sys.argv[2], hold_ttl_s=HOLD_TTL_S)
    await ledger.reserve([Scope("key:k:total", 1.0)], 0.9)
    print("held", flush=True)
    await asyncio.sleep(60)
asyncio.run(main())
"""


def test_hold_of_a_killed_process_expires(redis_url: str) -> None:
    prefix = f"tb-ledger-{uuid.uuid4().hex[:8]}:"
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLDER.replace("HOLD_TTL_S", str(HOLD_TTL_S))]
        + [redis_url, prefix, "cluster" if CLUSTER else "node"],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert holder.stdout is not None and holder.stdout.readline().strip() == "held"
    holder.send_signal(signal.SIGKILL)
    holder.wait()
    scopes = [Scope("key:k:total", 1.0)]

    async def has_room() -> bool:
        redis = await redis_client(redis_url)
        ledger = Ledger(redis, prefix, hold_ttl_s=60)
        try:
            await ledger.finish(await ledger.reserve(scopes, 0.5))
            return True
        except BudgetExceeded:
            return False
        finally:
            await redis.aclose()

    assert not asyncio.run(has_room())  # the dead process's hold still counts...
    # ...until it expires: the money is back.
    wait_until(lambda: asyncio.run(has_room()), HOLD_TTL_S + 30, "the dead process's hold lapsed")


@pytest.mark.skipif(CLUSTER, reason="the layout before hash tags never ran on a cluster")
def test_spend_recorded_before_hash_tags_is_kept(redis_url: str) -> None:
    async def scenario() -> None:
        ledger, redis, prefix = await ledger_for(redis_url)
        await redis.set(f"{prefix}budget:key:k:total:spent", "0.25")  # the old layout
        assert await ledger.adopt_legacy_keys() == 1
        (status,) = await ledger.status([Scope("key:k:total", 1.0)])
        assert status.spent_usd == 0.25
        await redis.set(f"{prefix}budget:key:k2:total:spent", "0.5")
        assert await ledger.adopt_legacy_keys() == 0  # done once: no scan at every start
        await redis.aclose()

    asyncio.run(scenario())
