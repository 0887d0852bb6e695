"""Conversations (OpenAI's Conversations API), shared by every replica through Redis.

A conversation is its metadata (owner, creation time, ``metadata``) and its items in order
(OpenAI's item shapes, as stored responses keep them: ``stored_items``). Both keys share one
hash tag, so a Redis Cluster keeps a conversation in one slot. A conversation lives for
``ttl_s`` after it was last written (renewed on every write), holds at most ``max_items``
items, and belongs to the API key that created it (another key gets 404).

A response that continues a conversation holds its lock while it runs (``SET NX``): a second
response on the same conversation is refused with 409 meanwhile, never interleaved
(docs/responses.md). The lock is a lease: its replica renews it every third of
``LOCK_LEASE_S`` from when the response is set up until it is released, so a replica that dies
frees the conversation within that, however long its responses wait or run.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
import weakref
from typing import Any, cast

from app.errors import ConversationBusy, InvalidRequest, NotFound, StoreUnavailable
from app.ids import stored_id
from app.json_text import from_stored_json, json_bytes
from app.store.connect import RedisClient
from app.store.errors import store_errors
from app.store.responses import stored_items

logger = logging.getLogger(__name__)

LOCK_LEASE_S = 30.0
"""A response's hold on its conversation lapses this long after it was last renewed."""

# KEYS: the lock. ARGV: the holder (and, to renew, the lease in ms). 1 if done: only the
# holder renews or releases it (a lock that lapsed may be another response's by now).
_RENEW = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('PEXPIRE', KEYS[1], ARGV[2]) end
return 0
"""
_RELEASE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"""


def conversation_id() -> str:
    return f"conv_{stored_id()}"


def _item(raw: bytes) -> dict[str, Any]:
    """An item as stored (a long conversation is hundreds of them)."""
    data: dict[str, Any] = from_stored_json(raw)
    return data


class ConversationStore:
    def __init__(
        self,
        redis: RedisClient,
        prefix: str,
        ttl_s: int,
        max_items: int,
        *,
        lock_lease_s: float = LOCK_LEASE_S,
    ) -> None:
        self._redis = redis
        self._prefix = f"{prefix}conv:"
        self._ttl_s = ttl_s
        self.max_items = max_items
        self._lease_s = lock_lease_s
        self._renew = redis.register_script(_RENEW)
        self._release = redis.register_script(_RELEASE)
        self._keepers: dict[tuple[str, str], asyncio.Task[None]] = {}
        """Renewing tasks by conversation and response, until released."""

    def _keys(self, cid: str) -> tuple[str, str, str]:
        base = f"{self._prefix}{{{cid}}}"
        return f"{base}:meta", f"{base}:items", f"{base}:lock"

    @staticmethod
    def _object(cid: str, meta: dict[str, Any]) -> dict[str, Any]:
        return {
            "id": cid,
            "object": "conversation",
            "created_at": int(meta["created_at"]),
            "metadata": json.loads(meta["metadata"]),
        }

    async def create(
        self, owner: str, metadata: dict[str, str], items: list[dict[str, Any]]
    ) -> dict[str, Any]:
        cid = conversation_id()
        meta_key, items_key, _ = self._keys(cid)
        meta = {
            "owner": owner,
            "created_at": str(int(time.time())),
            "metadata": json.dumps(metadata),
        }
        self.check_room(0, len(items))
        with store_errors("Conversations"):
            async with self._redis.pipeline(transaction=True) as pipe:
                pipe.hset(meta_key, mapping=dict(meta))  # type: ignore[arg-type]
                if items:
                    pipe.rpush(items_key, *(json_bytes(i) for i in stored_items(items)))
                    pipe.expire(items_key, self._ttl_s)
                pipe.expire(meta_key, self._ttl_s)
                await pipe.execute()
        return self._object(cid, meta)

    async def _meta(self, cid: str, owner: str, param: str = "conversation_id") -> dict[str, str]:
        """``param``: what a 404 names, the Conversations API's path parameter by default, a
        response's ``conversation`` field when a response reads or takes it."""
        meta_key, _, _ = self._keys(cid)
        with store_errors("Conversations"):
            raw = await self._redis.hgetall(meta_key)
        meta = {
            (k.decode() if isinstance(k, bytes) else k): (v.decode() if isinstance(v, bytes) else v)
            for k, v in raw.items()
        }
        if meta.get("owner") != owner:
            raise NotFound(f"Conversation with id '{cid}' not found.", param=param)
        return meta

    async def get(self, cid: str, owner: str) -> dict[str, Any]:
        return self._object(cid, await self._meta(cid, owner))

    async def update(self, cid: str, owner: str, metadata: dict[str, str]) -> dict[str, Any]:
        meta = await self._meta(cid, owner)
        meta_key, _, _ = self._keys(cid)
        with store_errors("Conversations"):
            await self._redis.hset(meta_key, "metadata", json.dumps(metadata))
        return self._object(cid, meta | {"metadata": json.dumps(metadata)})

    async def delete(self, cid: str, owner: str) -> None:
        await self._meta(cid, owner)
        with store_errors("Conversations"):
            await self._redis.delete(*self._keys(cid)[:2])

    async def items(
        self, cid: str, owner: str, param: str = "conversation_id"
    ) -> list[dict[str, Any]]:
        """Every item, oldest first."""
        return [_item(raw) for raw in await self._stored_items(cid, owner, param)]

    async def _stored_items(self, cid: str, owner: str, param: str) -> list[bytes]:
        """Every item as stored (its bytes), oldest first."""
        await self._meta(cid, owner, param)
        _, items_key, _ = self._keys(cid)
        with store_errors("Conversations"):
            raws = await self._redis.lrange(items_key, 0, -1)
        return cast(list[bytes], raws)  # bytes: the client does not decode responses

    def check_room(self, held: int, adding: int, *, param: str = "items") -> None:
        if held + adding > self.max_items:
            raise InvalidRequest(
                f"A conversation holds at most {self.max_items} items; this one has {held} "
                f"and {adding} more would be added.",
                param=param,
            )

    async def append(self, cid: str, owner: str, items: list[dict[str, Any]]) -> None:
        """Add ``items`` at the end (and keep the conversation for another ``ttl_s``)."""
        await self._meta(cid, owner)
        meta_key, items_key, _ = self._keys(cid)
        with store_errors("Conversations"):
            held = int(await self._redis.llen(items_key))
        self.check_room(held, len(items))
        if not items:
            return
        with store_errors("Conversations"):
            async with self._redis.pipeline(transaction=True) as pipe:
                pipe.rpush(items_key, *(json_bytes(i) for i in stored_items(items)))
                pipe.expire(items_key, self._ttl_s)
                pipe.expire(meta_key, self._ttl_s)
                await pipe.execute()

    async def item(self, cid: str, owner: str, item_id: str) -> dict[str, Any]:
        return (await self._find(cid, owner, item_id))[0]

    async def _find(self, cid: str, owner: str, item_id: str) -> tuple[dict[str, Any], bytes]:
        """The item ``item_id``, and its bytes as stored."""
        for raw in await self._stored_items(cid, owner, "conversation_id"):
            item = _item(raw)
            if item.get("id") == item_id:
                return item, raw
        raise NotFound(f"Item with id '{item_id}' not found.", param="item_id")

    async def delete_item(self, cid: str, owner: str, item_id: str) -> dict[str, Any]:
        """Remove one item; the conversation, as OpenAI answers."""
        _, stored = await self._find(cid, owner, item_id)
        _, items_key, _ = self._keys(cid)
        with store_errors("Conversations"):
            # By its bytes as stored, whichever encoder wrote them (UTF-8 JSON: decoded exactly).
            await self._redis.lrem(items_key, 1, stored.decode())
        return await self.get(cid, owner)

    async def hold(self, cid: str, owner: str, response_id: str) -> None:
        """Take the conversation for one response; ``ConversationBusy`` (409) if another has it."""
        await self._meta(cid, owner, "conversation")
        _, _, lock_key = self._keys(cid)
        with store_errors("Conversations"):
            taken = await self._redis.set(
                lock_key, response_id, nx=True, px=int(self._lease_s * 1000)
            )
        if not taken:
            raise ConversationBusy(cid)

    async def renew(self, cid: str, response_id: str) -> bool:
        """Extend the hold by a lease; False when it is no longer this response's (it lapsed)."""
        _, _, lock_key = self._keys(cid)
        with store_errors("Conversations"):
            renewed = await self._renew(
                keys=[lock_key], args=[response_id, int(self._lease_s * 1000)]
            )
        return bool(renewed)

    def keep(self, cid: str, response_id: str, holder: object) -> None:
        """Renew the hold every third of a lease until it is released, or until ``holder``
        (the response's run) is gone unrun: then nobody would release it, and it lapses.

        A bare task per response (it sleeps and renews), started when the response is set
        up, so a background response keeps its conversation while it waits for a slot."""
        task = asyncio.get_running_loop().create_task(
            self._keep(cid, response_id, weakref.ref(holder))
        )
        self._keepers[(cid, response_id)] = task  # the loop keeps only a weak reference
        task.add_done_callback(lambda _: self._keepers.pop((cid, response_id), None))

    async def _keep(self, cid: str, response_id: str, holder: weakref.ref[object]) -> None:
        while True:
            await asyncio.sleep(self._lease_s / 3)
            if holder() is None:
                return
            try:
                if not await self.renew(cid, response_id):
                    # Another response may be writing to it now: say so, the run goes on.
                    logger.warning(
                        "conversation %s: response %s lost its hold (it lapsed)", cid, response_id
                    )
                    return
            except StoreUnavailable:
                logger.warning("conversation %s: hold not renewed (Redis unavailable)", cid)

    async def release(self, cid: str, response_id: str) -> None:
        if (keeper := self._keepers.pop((cid, response_id), None)) is not None:
            keeper.cancel()
        _, _, lock_key = self._keys(cid)
        with store_errors("Conversations"):
            await self._release(keys=[lock_key], args=[response_id])
