"""The Redis stores on a real Redis, each test in a key space of its own."""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable
from typing import TypeVar

import anyio
import mcp_types as types
import pytest

from app.errors import NotFound
from app.store.connect import RedisClient
from app.store.hidden_turns import HiddenTurns
from app.store.mcp_cache import EraStore
from app.store.responses import ResponseStore, StoredResponse
from tests.conftest import redis_client

T = TypeVar("T")


def with_redis(redis_url: str, scenario: Callable[[RedisClient, str], Awaitable[T]]) -> T:
    async def go() -> T:
        redis = await redis_client(redis_url)
        try:
            return await scenario(redis, f"tb-store-{uuid.uuid4().hex[:8]}:")
        finally:
            await redis.aclose()

    return anyio.run(go)


def test_stored_responses_belong_to_their_owner(redis_url: str) -> None:
    async def scenario(redis: RedisClient, prefix: str) -> None:
        store = ResponseStore(redis, prefix, ttl_s=60)
        record = StoredResponse("alice", {"id": "resp_1"}, [{"id": "msg_1"}], [{"id": "msg_1"}])
        await store.save(record)
        assert 0 < await redis.ttl(f"{prefix}resp:resp_1") <= 60
        assert await store.load("resp_1", "alice") == record
        with pytest.raises(NotFound):
            await store.load("resp_1", "bob")  # someone else's is as good as missing
        with pytest.raises(NotFound):
            await store.delete("resp_1", "bob")
        await store.delete("resp_1", "alice")
        with pytest.raises(NotFound):
            await store.load("resp_1", "alice")

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
