"""The Redis stores on a real Redis, each test in a key space of its own."""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import anyio
import hiredis
import mcp_types as types
import pytest
import redis.asyncio
import redis.exceptions

from app.errors import (
    ConversationBusy,
    NotFound,
    StorageQuotaExceeded,
    TooManyBackgroundResponses,
)
from app.store import connect as connect_module
from app.store.background import LOST, BackgroundStore
from app.store.connect import (
    RedisClient,
    WaitingCluster,
    WaitingPool,
    connect,
    lean_commands,
    warm_up,
)
from app.store.conversations import ConversationStore
from app.store.hidden_turns import HiddenTurns
from app.store.mcp_cache import EraStore
from app.store.responses import CHAIN_IDS, Quotas, ResponseStore
from tests.conftest import CLUSTER, redis_client

T = TypeVar("T")


def with_redis(redis_url: str, scenario: Callable[[RedisClient, str], Awaitable[T]]) -> T:
    async def go() -> T:
        redis = await redis_client(redis_url)
        try:
            return await scenario(redis, f"tb-store-{uuid.uuid4().hex[:8]}:")
        finally:
            await redis.aclose()

    return anyio.run(go)


QUOTAS = Quotas(max_count=100, max_bytes=1_000_000)


def _response(response_id: str, text: str) -> dict[str, Any]:
    return {"id": response_id, "output": [{"type": "message", "id": f"out_{text}"}]}


def test_stored_responses_belong_to_their_owner(redis_url: str) -> None:
    async def scenario(redis: RedisClient, prefix: str) -> None:
        store = ResponseStore(redis, prefix, ttl_s=60, quotas=QUOTAS)
        items = [{"id": "msg_1", "type": "message", "role": "user", "content": [], "x": "junk"}]
        await store.save(
            owner="alice",
            response=_response("resp_1", "a"),
            input_items=items,
            previous=None,
        )
        assert 0 < await redis.ttl(f"{prefix}resp:resp_1") <= 60
        record = await store.load("resp_1", "alice")
        assert record.input_items == [{k: v for k, v in items[0].items() if k != "x"}]
        with pytest.raises(NotFound):
            await store.load("resp_1", "bob")  # someone else's is as good as missing
        with pytest.raises(NotFound):
            await store.delete("resp_1", "bob")
        await store.delete("resp_1", "alice")
        with pytest.raises(NotFound):
            await store.load("resp_1", "alice")

    with_redis(redis_url, scenario)


def test_records_read_back_exactly_whichever_encoder_wrote_them(redis_url: str) -> None:
    """A record is written by orjson unless it holds what orjson refuses (an integer past 64
    bits, say in a response format's schema): then by the stdlib. Each is read back by the
    encoder's own reader: orjson would read that integer as a float."""

    async def scenario(redis: RedisClient, prefix: str) -> None:
        store = ResponseStore(redis, prefix, ttl_s=60, quotas=QUOTAS)
        schema = {"type": "integer", "maximum": 2**70, "minimum": -(2**64)}
        big = {**_response("resp_big", "b"), "text": {"format": {"schema": schema}}}
        plain = {**_response("resp_plain", "p"), "text": {"format": {"type": "text"}}, "n": 1.5}
        for response in (big, plain):
            await store.save(owner="alice", response=response, input_items=[], previous=None)
        raws = [await redis.get(f"{prefix}resp:{r}") for r in ("resp_big", "resp_plain")]
        assert [raw[:11] for raw in raws if raw] == [b'{"owner": "', b'{"owner":"a']
        loaded = (await store.load("resp_big", "alice")).response["text"]["format"]["schema"]
        assert loaded == schema and type(loaded["maximum"]) is int
        assert (await store.load("resp_plain", "alice")).response == plain

    with_redis(redis_url, scenario)


def test_a_chain_is_rebuilt_from_its_records_not_copied(redis_url: str) -> None:
    """A 600-turn chain (past two rounds of ``CHAIN_IDS``): each record holds its own turn,
    the conversation comes back whole and in order, and a deleted turn says so."""

    async def scenario(redis: RedisClient, prefix: str) -> None:
        store = ResponseStore(redis, prefix, ttl_s=600, quotas=QUOTAS)
        previous = None
        for turn in range(600):
            await store.save(
                owner="alice",
                response=_response(f"resp_{turn}", str(turn)),
                input_items=[{"id": f"in_{turn}", "type": "message", "role": "user"}],
                previous=previous,
            )
            previous = await store.load(f"resp_{turn}", "alice")
        assert previous is not None and len(previous.chain) == CHAIN_IDS
        conversation = await store.conversation(previous)
        expected = [i for t in range(600) for i in (f"in_{t}", f"out_{t}")]
        assert [item["id"] for item in conversation] == expected
        sizes = [len(await redis.get(f"{prefix}resp:resp_{t}")) for t in (1, 599)]
        assert sizes[1] < 20 * sizes[0]  # ids of ancestors, not their items
        await store.delete("resp_10", "alice")
        with pytest.raises(NotFound, match="resp_10"):
            await store.conversation(previous)

    with_redis(redis_url, scenario)


def test_saving_a_turn_renews_the_turns_it_continues(redis_url: str) -> None:
    """A conversation lives as long as its latest turn: saving a turn renews its ancestors'
    records and their place in the owner's quota (one script on one node, a pipeline and the
    quota script on a cluster)."""

    async def scenario(redis: RedisClient, prefix: str) -> None:
        store = ResponseStore(redis, prefix, ttl_s=600, quotas=QUOTAS)
        await store.save(
            owner="alice", response=_response("resp_0", "0"), input_items=[], previous=None
        )
        first = await store.load("resp_0", "alice")
        exp = f"{prefix}respq:{{alice}}:exp"
        await redis.expire(f"{prefix}resp:resp_0", 5)  # nearly gone
        await redis.zadd(exp, {"resp_0": time.time() + 5}, xx=True)
        await store.save(
            owner="alice", response=_response("resp_1", "1"), input_items=[], previous=first
        )
        assert 590 < await redis.ttl(f"{prefix}resp:resp_0") <= 600
        assert 590 < await redis.zscore(exp, "resp_0") - time.time() <= 600
        assert 590 < await redis.ttl(f"{prefix}resp:resp_1") <= 600
        assert [i["id"] for i in await store.conversation(await store.load("resp_1", "alice"))] == [
            "out_0",
            "out_1",
        ]

    with_redis(redis_url, scenario)


def test_a_record_of_the_earlier_layout_is_continued(redis_url: str) -> None:
    async def scenario(redis: RedisClient, prefix: str) -> None:
        store = ResponseStore(redis, prefix, ttl_s=60, quotas=QUOTAS)
        old = {"owner": "alice", "response": _response("resp_old", "old"), "input_items": []}
        old["conversation"] = [{"id": "in_0"}, {"id": "out_0"}]
        await redis.set(f"{prefix}resp:resp_old", json.dumps(old))
        previous = await store.load("resp_old", "alice")
        await store.save(
            owner="alice",
            response=_response("resp_new", "1"),
            input_items=[{"id": "in_1", "type": "message"}],
            previous=previous,
        )
        latest = await store.load("resp_new", "alice")
        ids = [item["id"] for item in await store.conversation(latest)]
        assert ids == ["in_0", "out_0", "in_1", "out_1"]

    with_redis(redis_url, scenario)


def test_quotas_per_key_refuse_before_a_run_and_free_on_delete(redis_url: str) -> None:
    async def scenario(redis: RedisClient, prefix: str) -> None:
        store = ResponseStore(redis, prefix, ttl_s=60, quotas=Quotas(max_count=3, max_bytes=10**6))
        for turn in range(3):
            await store.check_quota("alice")
            await store.save(
                owner="alice",
                response=_response(f"resp_{turn}", str(turn)),
                input_items=[],
                previous=None,
            )
        with pytest.raises(StorageQuotaExceeded, match="keeps 3 responses"):
            await store.check_quota("alice")
        await store.check_quota("bob")  # another key's quota is its own
        await store.delete("resp_0", "alice")
        await store.check_quota("alice")  # deleting frees it
        small = ResponseStore(redis, prefix, ttl_s=60, quotas=Quotas(max_count=99, max_bytes=2048))
        await small.save(
            owner="carol",
            response={**_response("resp_big", "x"), "pad": "p" * 4000},
            input_items=[],
            previous=None,
        )
        with pytest.raises(StorageQuotaExceeded, match="2048 bytes"):
            await small.check_quota("carol")

    with_redis(redis_url, scenario)


def test_a_replica_trusts_an_owner_it_saw_under_quota_for_a_moment_only(redis_url: str) -> None:
    async def scenario(redis: RedisClient, prefix: str) -> None:
        quotas = Quotas(max_count=2, max_bytes=10**6)
        here = ResponseStore(redis, prefix, ttl_s=60, quotas=quotas, quota_known_s=0.5)
        there = ResponseStore(redis, prefix, ttl_s=60, quotas=quotas)
        await here.check_quota("erin")  # under: remembered for half a second
        for turn in range(2):  # another replica fills the quota meanwhile
            await there.save(
                owner="erin", response=_response(f"resp_{turn}", "x"), input_items=[], previous=None
            )
        with pytest.raises(StorageQuotaExceeded):
            await there.check_quota("erin")  # the replica that saved knows at once
        await here.check_quota("erin")  # within the moment: not asked again
        await asyncio.sleep(0.6)
        with pytest.raises(StorageQuotaExceeded, match="keeps 2 responses"):
            await here.check_quota("erin")

    with_redis(redis_url, scenario)


def test_a_record_is_counted_in_bytes_even_when_redis_forgot_the_quota_script(
    redis_url: str,
) -> None:
    async def scenario(redis: RedisClient, prefix: str) -> None:
        store = ResponseStore(redis, prefix, ttl_s=60, quotas=Quotas(max_count=1, max_bytes=10**6))
        await redis.script_flush()  # as after a restart: Redis no longer knows the script
        text = "é✓" * 10  # not ASCII: more bytes than characters
        await store.save(
            owner="dave", response=_response("resp_a", text), input_items=[], previous=None
        )
        with pytest.raises(StorageQuotaExceeded, match="keeps 1 responses"):
            await store.check_quota("dave")
        record = await redis.get(f"{prefix}resp:resp_a")
        assert int(await redis.get(f"{prefix}respq:{{dave}}:total")) == len(record)
        loaded = await store.load("resp_a", "dave")
        assert loaded.response["output"][0]["id"] == f"out_{text}"

    with_redis(redis_url, scenario)


def test_hidden_turns_come_back_in_order_per_key(redis_url: str) -> None:
    async def scenario(redis: RedisClient, prefix: str) -> None:
        hidden = HiddenTurns(redis, prefix, ttl_s=60)
        turns = [{"role": "assistant", "content": None, "tool_calls": []}]
        await hidden.save("alice", ["c1", "c2"], turns)
        assert await hidden.load_many("alice", ["c2", "missing", "c1"]) == [turns, None, turns]
        assert await hidden.load_many("bob", ["c1"]) == [None]
        assert await hidden.load_many("alice", []) == []
        assert 0 < await redis.ttl(f"{prefix}hidden:{{alice}}:c1") <= 60  # one slot per key

    with_redis(redis_url, scenario)


def test_hidden_turns_and_background_events_read_back_exactly_whoever_wrote_them(
    redis_url: str,
) -> None:
    """Both are written by orjson, or by the stdlib for what orjson refuses (an integer past 64
    bits, a lone surrogate), and background events were written by the stdlib's compact text
    before: each reads back as written."""
    refused = {"role": "tool", "content": "lone \ud800 surrogate", "n": 2**70}

    async def scenario(redis: RedisClient, prefix: str) -> None:
        hidden = HiddenTurns(redis, prefix, ttl_s=60)
        plain = [{"role": "assistant", "content": "«é»", "tool_calls": []}]
        await hidden.save("alice", ["c1"], plain)
        await hidden.save("alice", ["c2"], [refused])
        assert await hidden.load_many("alice", ["c1", "c2"]) == [plain, [refused]]
        assert (await redis.get(f"{prefix}hidden:{{alice}}:c1")).startswith(b'[{"role":')

        store = BackgroundStore(redis, prefix, ttl_s=600, lease_s=30, max_per_key=2)
        running = {"id": "resp_1", "status": "in_progress", "output": [], "n": 2**70}
        await store.create({**running, "status": "queued"}, "k", [refused])
        assert await store.input_items("resp_1", "k") == [refused]
        events = [{"type": "response.created", "sequence_number": 0, "text": "«é»"}]
        await store.record(running, [*events, {**refused, "sequence_number": 1}])
        older = {"type": "x", "text": "lone \udfff", "sequence_number": 2}
        await redis.rpush(f"{prefix}bg:{{resp_1}}:events", json.dumps(older, separators=(",", ":")))
        assert await store.events_after("resp_1", -1) == [
            *events,
            {**refused, "sequence_number": 1},
            older,
        ]
        stored = await store.state("resp_1", "k")
        assert stored == running and type(stored["n"]) is int
        first = await redis.lindex(f"{prefix}bg:{{resp_1}}:events", 0)
        assert (
            first.startswith(b'{"type":"response.created"') and "«é»".encode() in first
        )  # orjson's

    with_redis(redis_url, scenario)


def test_eras_are_remembered_and_forgotten(redis_url: str) -> None:
    async def scenario(redis: RedisClient, prefix: str) -> None:
        eras = EraStore(redis, prefix, ttl_s=60)
        assert await eras.get("http://a/mcp") is None
        await eras.set("http://a/mcp", "legacy")
        await eras.set("http://b/sse", "sse")
        discovered = types.DiscoverResult(
            supported_versions=["2026-07-28"],
            capabilities=types.ServerCapabilities(),
            server_info=types.Implementation(name="s", version="1"),
        )
        await eras.set("http://c/mcp", discovered)
        assert await eras.get("http://a/mcp") == "legacy"
        assert await eras.get("http://b/sse") == "sse"
        assert await eras.get("http://c/mcp") == discovered
        await eras.forget("http://a/mcp")
        assert await eras.get("http://a/mcp") is None

    with_redis(redis_url, scenario)


def test_a_background_response_whose_replica_died_ends_failed_once(redis_url: str) -> None:
    async def scenario(redis: RedisClient, prefix: str) -> None:
        store = BackgroundStore(redis, prefix, ttl_s=600, lease_s=1, max_per_key=2)
        running = {"id": "resp_1", "status": "in_progress", "output": []}
        await store.create({**running, "status": "queued"}, "k")
        await store.record(running, [{"type": "response.created", "sequence_number": 0}])
        assert (await store.state("resp_1", "k"))["status"] == "in_progress"  # type: ignore[index]
        assert await store.state("resp_1", "other") is None
        await redis.delete(f"{prefix}bg:{{resp_1}}:lease")  # the replica died: its lease lapsed
        lost = await store.state("resp_1", "k")
        assert lost is not None and lost["status"] == "failed"
        assert lost["error"] == LOST
        events = await store.events_after("resp_1", -1)
        assert [e["sequence_number"] for e in events] == [0, 1]
        assert events[-1]["type"] == "response.failed"
        assert events[-1]["response"]["error"]["code"] == "server_error"
        # A replica that was only paused cannot write over it, nor renew its lease.
        await store.record({**running, "status": "completed"}, [{"type": "x"}])
        assert (await store.state("resp_1", "k"))["status"] == "failed"  # type: ignore[index]
        assert len(await store.events_after("resp_1", -1)) == 2
        assert await store.keep_running("resp_1", "k") is False

    with_redis(redis_url, scenario)


def test_background_responses_per_key_count_every_replica_and_free_on_finish(
    redis_url: str,
) -> None:
    async def scenario(redis: RedisClient, prefix: str) -> None:
        stores = [
            BackgroundStore(redis, prefix, ttl_s=600, lease_s=1, max_per_key=2) for _ in range(2)
        ]
        await stores[0].create({"id": "resp_a", "status": "queued"}, "k")
        await stores[1].create({"id": "resp_b", "status": "queued"}, "k")
        with pytest.raises(TooManyBackgroundResponses):
            await stores[0].create({"id": "resp_c", "status": "queued"}, "k")
        await stores[1].create({"id": "resp_d", "status": "queued"}, "another key")
        await stores[0].finish("resp_a", "k")
        await stores[1].create({"id": "resp_c", "status": "queued"}, "k")
        # A replica that dies stops renewing: its entries lapse with the lease.
        assert await stores[1].keep_running("resp_b", "k") is True
        await anyio.sleep(1.2)
        await stores[0].create({"id": "resp_e", "status": "queued"}, "k")
        await stores[0].create({"id": "resp_f", "status": "queued"}, "k")

    with_redis(redis_url, scenario)


class Run:
    """Stands for a response's run (``ConversationStore.keep`` watches whether it is gone)."""


def test_conversation_items_read_back_exactly_and_are_deleted_whoever_wrote_them(
    redis_url: str,
) -> None:
    """Items are written by orjson, or by the stdlib for what orjson refuses (an integer past 64
    bits) and before; each reads back as written, and each can be deleted."""

    async def scenario(redis: RedisClient, prefix: str) -> None:
        store = ConversationStore(redis, prefix, 60, 100)
        quoted = 'a tool said {"key": "value", "n": 18446744073709551616}'
        new = [
            {"type": "message", "id": "msg_1", "role": "user", "content": "plain «é»"},
            {"type": "message", "id": "msg_2", "role": "assistant", "content": quoted},
            {"type": "custom", "id": "x_3", "n": 2**70, "m": -(2**63) - 1},  # kept whole
        ]
        cid = (await store.create("owner", {}, new))["id"]
        items_key = f"{prefix}conv:{{{cid}}}:items"
        older = {"type": "message", "id": "msg_4", "role": "user", "content": "from before"}
        await redis.rpush(items_key, json.dumps(older))  # as items were written before
        read = await store.items(cid, "owner")
        assert read == [*new, older]
        assert type(read[2]["n"]) is int and type(read[2]["m"]) is int
        raws = await redis.lrange(items_key, 0, -1)
        assert raws[0].startswith(b'{"type":"message"')  # orjson's
        for item_id in ("msg_4", "x_3", "msg_2", "msg_1"):
            await store.delete_item(cid, "owner", item_id)
            assert item_id not in [i["id"] for i in await store.items(cid, "owner")]
        assert await store.items(cid, "owner") == []

    with_redis(redis_url, scenario)


def test_a_conversation_is_held_while_its_response_runs_and_freed_soon_after_its_replica_died(
    redis_url: str,
) -> None:
    lease_s = 1.5

    async def scenario(redis: RedisClient, prefix: str) -> None:
        store = ConversationStore(redis, prefix, 60, 10, lock_lease_s=lease_s)
        cid = (await store.create("owner", {}, []))["id"]
        await store.hold(cid, "owner", "resp_a")
        run = Run()
        store.keep(cid, "resp_a", run)
        await asyncio.sleep(lease_s * 2.5)  # renewed meanwhile, so still held
        with pytest.raises(ConversationBusy):
            await store.hold(cid, "owner", "resp_b")
        # The run is gone and nobody released its hold (as when the response's replica
        # died, or the run was dropped before it started): it lapses within a lease.
        del run
        await asyncio.sleep(lease_s * 1.5 + 0.5)
        await store.hold(cid, "owner", "resp_b")
        # The hold that lapsed is not renewed over the one taken since.
        assert not await store.renew(cid, "resp_a")
        assert await store.renew(cid, "resp_b")
        with pytest.raises(ConversationBusy):
            await store.hold(cid, "owner", "resp_c")
        # Released, it is free at once, and no longer renewed.
        store.keep(cid, "resp_b", run_b := Run())
        await store.release(cid, "resp_b")
        await store.hold(cid, "owner", "resp_c")
        assert not await store.renew(cid, "resp_b")
        del run_b

    with_redis(redis_url, scenario)


def test_a_burst_past_redis_pys_default_pool_is_served(redis_url: str) -> None:
    """redis-py's default pool holds 100 connections and fails the 101st command at once; a
    burst of a few hundred runs answered 503. Our client's pool is larger (and on one node,
    waits for a free connection)."""

    async def burst() -> None:
        redis = connect(redis_url, cluster=CLUSTER)
        await warm_up(redis)  # as toolbridge does at start-up (see its docstring)
        key = f"tb-burst-{uuid.uuid4().hex[:6]}"
        try:
            # SADD, not INCR: a cluster client may send a command again after a connection
            # error, and what is counted here is commands that failed, not sent twice.
            await asyncio.gather(*(redis.sadd(key, index) for index in range(400)))
            assert await redis.scard(key) == 400
        finally:
            await redis.delete(key)
            await redis.aclose()

    anyio.run(burst)


def test_a_burst_past_the_connection_bound_waits_its_turn(
    redis_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Commands and pipelines beyond ``max_connections`` wait for a free connection, on one
    node and on a cluster (whose nodes in redis-py fail the command past their bound at once);
    no node is asked for more than the bound; a command that waits too long fails clearly."""
    monkeypatch.setattr(connect_module, "POOL_WAIT_S", 0.5)

    async def pipelined(client: RedisClient, key: str, index: int) -> list[Any]:
        async with client.pipeline(transaction=False) as pipe:
            pipe.sadd(key, f"p{index}")
            pipe.scard(key)
            return list(await pipe.execute())

    async def burst() -> None:
        client = connect(redis_url, cluster=CLUSTER, max_connections=8)
        await warm_up(client)
        key = f"tb-bound-{uuid.uuid4().hex[:6]}"
        try:
            await asyncio.gather(
                *(client.sadd(key, index) for index in range(300)),
                *(pipelined(client, key, index) for index in range(50)),
            )
            assert await client.scard(key) == 350
            if isinstance(client, WaitingCluster):
                # Private (redis-py 8.1): the connections each node made.
                made = [len(node._connections) for node in client.get_nodes()]
                assert max(made) <= 8, made
                for _ in range(8):  # every turn taken: the next command waits, then fails
                    await client.in_flight.acquire()
                with pytest.raises(redis.exceptions.ConnectionError, match="No connection"):
                    await client.scard(key)
                with pytest.raises(redis.exceptions.ConnectionError, match="No connection"):
                    await pipelined(client, key, 0)
                for _ in range(8):
                    client.in_flight.release()
                assert await client.scard(key) == 350
        finally:
            await client.delete(key)
            await client.aclose()

    anyio.run(burst)


def test_the_pool_waits_for_a_free_connection_and_keeps_none(redis_url: str) -> None:
    """The fast path (a free connection, nobody waiting) and redis-py's waiting path share one
    pool: commands beyond its connections wait their turn, a command that waits too long fails
    clearly, and every connection is back in the pool afterwards."""

    async def scenario() -> None:
        pool = WaitingPool.from_url(redis_url, max_connections=4, timeout=0.5)
        client = redis.asyncio.Redis.from_pool(pool)
        try:
            answers = await asyncio.gather(*(client.echo(f"n{i}") for i in range(200)))
            assert answers == [f"n{i}".encode() for i in range(200)]
            for _ in range(3):  # one at a time: the fast path only
                assert await client.echo("alone") == b"alone"
            assert len(pool._in_use_connections) == 0  # private: what the fast path keeps
            assert len(pool._available_connections) == 4

            held = [await pool.get_connection() for _ in range(4)]
            waiting = asyncio.create_task(client.echo("waited"))
            await asyncio.sleep(0.1)
            await pool.release(held.pop())  # a waiter exists: it is woken with this one
            assert await waiting == b"waited"
            held.append(await pool.get_connection())  # all four held again
            with pytest.raises(redis.exceptions.ConnectionError, match="No connection"):
                await client.echo("too long")
            for connection in held:
                await pool.release(connection)
            assert await client.echo("after") == b"after"
            assert len(pool._in_use_connections) == 0
        finally:
            await client.aclose()

    anyio.run(scenario)


class _AnswersUntilPaused(asyncio.Protocol):
    """A server that answers ``+OK`` to every command, until its reading is paused."""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        self._commands = hiredis.Reader()

    def data_received(self, data: bytes) -> None:
        self._commands.feed(data)
        while self._commands.gets() is not False:
            self.transport.write(b"+OK\r\n")


def test_a_write_the_server_does_not_take_times_out_and_drops_the_connection() -> None:
    """A command's write is bounded by ``socket_timeout`` (with ``asyncio.timeout``, not
    redis-py's task per write): a server that stops reading fails the write with redis-py's
    ``TimeoutError`` at the bound, the connection is dropped, and the bound stays set."""

    async def scenario() -> None:
        servers: list[_AnswersUntilPaused] = []

        def serve() -> _AnswersUntilPaused:
            servers.append(_AnswersUntilPaused())
            return servers[-1]

        listening = await asyncio.get_running_loop().create_server(serve, "127.0.0.1", 0)
        port = listening.sockets[0].getsockname()[1]
        connection = lean_commands(redis.asyncio.connection.Connection)(
            host="127.0.0.1", port=port, socket_timeout=0.5
        )
        try:
            await connection.connect()
            await connection.send_packed_command(connection.pack_command("SET", "k", "v"))
            assert await connection.read_response() == b"OK"
            servers[0].transport.pause_reading()
            started = time.monotonic()
            with pytest.raises(redis.exceptions.TimeoutError, match="writing"):
                async with asyncio.timeout(10):  # unbounded, it would fail here, not hang
                    await connection.send_packed_command([b"x" * (64 << 20)])  # past buffers
            assert 0.4 < time.monotonic() - started < 5
            assert not connection.is_connected
            assert connection.socket_timeout == 0.5
        finally:
            for server in servers:
                server.transport.abort()
            await connection.disconnect()
            listening.close()

    asyncio.run(scenario())


def test_commands_are_packed_by_hiredis_to_the_bytes_redis_py_packs(redis_url: str) -> None:
    """The client toolbridge makes packs with hiredis, on one node and on every node of a
    cluster, and sends what redis-py's own (Python) packing sends, for every kind of argument
    toolbridge passes, and for those hiredis takes only once converted (bytearray,
    memoryview); what neither can send is refused as redis-py refuses it."""
    commands: list[tuple[Any, ...]] = [
        ("EVALSHA", "a" * 40, 2, "{tb}:spent", "{tb}:holds", 1733371234.123456, 0.1 + 0.2),
        ("SET", "clé-été", b"\x00\xff raw", "EX", 30),
        ("CONFIG GET", "maxmemory"),  # a name of two words is sent as two arguments
        ("INCRBYFLOAT", "k", -6e-7, 1e300, 0, -17, 2**62),
        ("SET", "k", bytearray(b"array"), "PX", memoryview(b"100")),
        (b"GET", "k"),
    ]
    python = redis.asyncio.connection.Connection()  # redis-py's asyncio packing, in Python
    hiredis = lean_commands(redis.asyncio.connection.Connection)()
    for command in commands:
        assert hiredis.pack_command(*command) == [b"".join(python.pack_command(*command))]
    for bad in (None, {"a": 1}):
        with pytest.raises(redis.exceptions.DataError):
            python.pack_command("SET", "k", bad)
        with pytest.raises(redis.exceptions.DataError):
            hiredis.pack_command("SET", "k", bad)

    async def scenario(redis_: RedisClient, prefix: str) -> None:
        if CLUSTER:
            nodes = redis_.get_nodes()  # type: ignore[union-attr]
            assert nodes and all(
                node.connection_class.__name__.startswith("Lean") for node in nodes
            )
        else:
            pool = redis_.connection_pool  # type: ignore[union-attr]
            assert pool.connection_class.__name__ == "LeanConnection"
        await redis_.set(f"{prefix}clé", "été", ex=30)
        assert await redis_.get(f"{prefix}clé") == "été".encode()
        assert float(await redis_.incrbyfloat(f"{prefix}n", 0.1 + 0.2)) == 0.1 + 0.2
        await redis_.delete(f"{prefix}clé", f"{prefix}n")

    with_redis(redis_url, scenario)
