"""Background responses' live state, shared by every replica through Redis.

While a background response runs on one replica, any replica can read its state (status and
the Response so far), follow its stream events (each kept, in order, for resumable streams)
and ask it to stop. Per response, under one hash tag: ``state`` (hash: owner, status, the
Response as JSON), ``events`` (list of stream events as JSON), ``cancel`` (set when a
cancellation was asked) and ``lease`` (renewed by the running replica: a replica that dies
leaves it to lapse, and readers then see the response failed).
"""

from __future__ import annotations

import json
from typing import Any

from app.store.connect import RedisClient
from app.store.errors import store_errors

TERMINAL = frozenset({"completed", "failed", "incomplete", "cancelled"})
LEASE_S = 15
"""A running replica renews its lease every third of this."""


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


class BackgroundStore:
    def __init__(self, redis: RedisClient, prefix: str, ttl_s: int) -> None:
        self._redis = redis
        self._prefix = f"{prefix}bg:"
        self._ttl_s = ttl_s

    def _key(self, response_id: str, part: str) -> str:
        return f"{self._prefix}{{{response_id}}}:{part}"

    async def create(self, response: dict[str, Any], owner: str) -> None:
        rid = response["id"]
        with store_errors("Background responses"):
            async with self._redis.pipeline(transaction=True) as pipe:
                pipe.hset(
                    self._key(rid, "state"),
                    mapping={
                        "owner": owner,
                        "status": response["status"],
                        "response": json.dumps(response),
                    },
                )
                pipe.expire(self._key(rid, "state"), self._ttl_s)
                pipe.set(self._key(rid, "lease"), "1", ex=LEASE_S)
                await pipe.execute()

    async def record(self, response: dict[str, Any], events: list[dict[str, Any]]) -> None:
        """The Response as it stands now, and the stream events that brought it there."""
        rid = response["id"]
        with store_errors("Background responses"):
            async with self._redis.pipeline(transaction=True) as pipe:
                if events:
                    pipe.rpush(self._key(rid, "events"), *(json.dumps(e) for e in events))
                    pipe.expire(self._key(rid, "events"), self._ttl_s)
                pipe.hset(
                    self._key(rid, "state"),
                    mapping={"status": response["status"], "response": json.dumps(response)},
                )
                await pipe.execute()

    async def state(self, response_id: str, owner: str) -> dict[str, Any] | None:
        """The Response as it stands (``failed`` if its replica stopped), or None when
        ``owner`` has no background response of that id."""
        with store_errors("Background responses"):
            async with self._redis.pipeline(transaction=False) as pipe:
                pipe.hgetall(self._key(response_id, "state"))
                pipe.exists(self._key(response_id, "lease"))
                raw, alive = await pipe.execute()
        fields = {_text(k): _text(v) for k, v in raw.items()}
        if fields.get("owner") != owner:
            return None
        response: dict[str, Any] = json.loads(fields["response"])
        if response["status"] not in TERMINAL and not alive:
            response["status"] = "failed"
            response["error"] = {
                "code": "server_error",
                "message": "The server running this response stopped before it finished.",
            }
        return response

    async def events_after(self, response_id: str, sequence_number: int) -> list[dict[str, Any]]:
        """Stream events with a greater sequence number, in order."""
        with store_errors("Background responses"):
            raws = await self._redis.lrange(
                self._key(response_id, "events"), sequence_number + 1, -1
            )
        return [json.loads(raw) for raw in raws]

    async def ask_cancel(self, response_id: str) -> None:
        with store_errors("Background responses"):
            await self._redis.set(self._key(response_id, "cancel"), "1", ex=self._ttl_s)

    async def keep_running(self, response_id: str) -> bool:
        """Renew the lease; False once a cancellation was asked."""
        with store_errors("Background responses"):
            async with self._redis.pipeline(transaction=False) as pipe:
                pipe.set(self._key(response_id, "lease"), "1", ex=LEASE_S)
                pipe.exists(self._key(response_id, "cancel"))
                _, cancel = await pipe.execute()
        return not cancel
