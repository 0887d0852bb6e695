"""Background responses' live state, shared by every replica through Redis.

While a background response runs on one replica, any replica can read its state (status and
the Response so far), follow its stream events (each kept, in order, for resumable streams)
and ask it to stop. Per response, under one hash tag: ``state`` (hash: owner, status, the
Response as JSON), ``events`` (list of stream events as JSON: event N is item N, so a resumed
stream reads from index N + 1), ``cancel`` (set when a cancellation was asked) and ``lease``
(renewed by the replica that holds the run). All of it is kept as long as stored responses.

A replica that dies leaves its lease to lapse; the first reader after that marks the response
``failed`` and ends its stream with ``response.failed`` (one script, so a replica that was only
paused cannot write over it when it wakes: a response's terminal status is written once).

Per key, a sorted set holds the background responses queued or running, each scored by its
lease's expiry, so the limit counts every replica and forgets a dead one's runs by itself.

The JSON is ``json_bytes``' (orjson's, unless orjson refuses the value), read back by
``from_stored_json``, which also reads the stdlib's compact text of earlier releases.
"""

from __future__ import annotations

from typing import Any

from app.errors import TooManyBackgroundResponses
from app.json_text import from_stored_json, json_bytes
from app.store.connect import RedisClient
from app.store.errors import store_errors

TERMINAL = frozenset({"completed", "failed", "incomplete", "cancelled"})
LOST = {
    "code": "server_error",
    "message": "The server running this background response stopped before it finished; "
    "the run was lost. Create the response again.",
}
"""The error of a response whose replica died (``code`` is one of OpenAI's ``ResponseError``
codes, which the SDK's types enumerate; the message says what happened)."""

_TERMINAL_LUA = "{completed=1, failed=1, incomplete=1, cancelled=1}"

# KEYS: state, events. ARGV: status, response JSON, events JSON... A response's terminal
# status is written once: after it, nothing more is recorded.
_RECORD = f"""
local terminal = {_TERMINAL_LUA}
local ttl = redis.call('PTTL', KEYS[1])
if ttl <= 0 or terminal[redis.call('HGET', KEYS[1], 'status')] then return 0 end
if #ARGV > 2 then
  redis.call('RPUSH', KEYS[2], unpack(ARGV, 3))
  redis.call('PEXPIRE', KEYS[2], ttl)
end
redis.call('HSET', KEYS[1], 'status', ARGV[1], 'response', ARGV[2])
return 1
"""

# KEYS: state, events, lease. ARGV: the failed Response's JSON, the response.failed event's
# JSON without its closing ``sequence_number`` value and brace (the next index is put there).
_MARK_LOST = f"""
local terminal = {_TERMINAL_LUA}
if redis.call('EXISTS', KEYS[3]) == 1 then return 0 end
local status = redis.call('HGET', KEYS[1], 'status')
local ttl = redis.call('PTTL', KEYS[1])
if not status or ttl <= 0 or terminal[status] then return 0 end
redis.call('RPUSH', KEYS[2], ARGV[2] .. redis.call('LLEN', KEYS[2]) .. '}}')
redis.call('PEXPIRE', KEYS[2], ttl)
redis.call('HSET', KEYS[1], 'status', 'failed', 'response', ARGV[1])
return 1
"""

# KEYS: the key's active set. ARGV: limit, lease ms, response id. 1 if admitted.
_ADMIT = """
local now = redis.call('TIME')
local ms = tonumber(now[1]) * 1000 + math.floor(tonumber(now[2]) / 1000)
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', ms)
if redis.call('ZCARD', KEYS[1]) >= tonumber(ARGV[1]) then return 0 end
redis.call('ZADD', KEYS[1], ms + tonumber(ARGV[2]), ARGV[3])
redis.call('PEXPIRE', KEYS[1], ARGV[2])
return 1
"""

# KEYS: the key's active set. ARGV: lease ms, response id.
_RENEW = """
local now = redis.call('TIME')
local ms = tonumber(now[1]) * 1000 + math.floor(tonumber(now[2]) / 1000)
redis.call('ZADD', KEYS[1], 'XX', ms + tonumber(ARGV[1]), ARGV[2])
redis.call('PEXPIRE', KEYS[1], ARGV[1])
return 1
"""


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


class BackgroundStore:
    def __init__(
        self,
        redis: RedisClient,
        prefix: str,
        *,
        ttl_s: int,
        lease_s: float,
        max_per_key: int,
    ) -> None:
        self._redis = redis
        self._prefix = f"{prefix}bg:"
        self._ttl_s = ttl_s
        self.lease_ms = int(lease_s * 1000)
        self.max_per_key = max_per_key
        self._record = redis.register_script(_RECORD)
        self._mark_lost = redis.register_script(_MARK_LOST)
        self._admit = redis.register_script(_ADMIT)
        self._renew = redis.register_script(_RENEW)

    def _key(self, response_id: str, part: str) -> str:
        return f"{self._prefix}{{{response_id}}}:{part}"

    def _active(self, owner: str) -> str:
        return f"{self._prefix}active:{{{owner}}}"

    async def create(
        self, response: dict[str, Any], owner: str, input_items: list[dict[str, Any]] | None = None
    ) -> None:
        """Record a new background response, queued; ``TooManyBackgroundResponses`` when
        ``owner`` has as many queued or running as it may. ``input_items`` are kept until the
        run ends (its stored record has them from then on)."""
        rid = response["id"]
        with store_errors("Background responses"):
            admitted = await self._admit(
                keys=[self._active(owner)], args=[self.max_per_key, self.lease_ms, rid]
            )
            if not admitted:
                raise TooManyBackgroundResponses(self.max_per_key)
            async with self._redis.pipeline(transaction=True) as pipe:
                pipe.hset(
                    self._key(rid, "state"),
                    mapping={
                        "owner": owner,
                        "status": response["status"],
                        "response": json_bytes(response),
                        "input_items": json_bytes(input_items or []),
                    },
                )
                pipe.expire(self._key(rid, "state"), self._ttl_s)
                pipe.set(self._key(rid, "lease"), "1", px=self.lease_ms)
                await pipe.execute()

    async def record(self, response: dict[str, Any], events: list[dict[str, Any]]) -> None:
        """The Response as it stands now, and the stream events that brought it there
        (nothing, once the response has ended)."""
        rid = response["id"]
        with store_errors("Background responses"):
            await self._record(
                keys=[self._key(rid, "state"), self._key(rid, "events")],
                args=[response["status"], json_bytes(response), *(json_bytes(e) for e in events)],
            )

    async def state(self, response_id: str, owner: str) -> dict[str, Any] | None:
        """The Response as it stands (marked ``failed`` first if its replica stopped), or
        None when ``owner`` has no background response of that id."""
        with store_errors("Background responses"):
            async with self._redis.pipeline(transaction=False) as pipe:
                # Not the input items: a follower reads this ten times a second.
                pipe.hmget(self._key(response_id, "state"), ["owner", "response"])
                pipe.exists(self._key(response_id, "lease"))
                (raw_owner, raw_response), alive = await pipe.execute()
            if raw_owner is None or _text(raw_owner) != owner or raw_response is None:
                return None
            response: dict[str, Any] = from_stored_json(raw_response)
            if response["status"] in TERMINAL or alive:
                return response
            lost = {**response, "status": "failed", "error": LOST}
            ended = json_bytes({"type": "response.failed", "response": lost})
            await self._mark_lost(
                keys=[self._key(response_id, p) for p in ("state", "events", "lease")],
                args=[json_bytes(lost), ended[:-1] + b',"sequence_number":'],
            )
            # Read again: the run may have ended (or renewed its lease) just before.
            raw = await self._redis.hget(self._key(response_id, "state"), "response")
        return from_stored_json(raw) if raw is not None else None

    async def input_items(self, response_id: str, owner: str) -> list[dict[str, Any]] | None:
        """The input items of ``owner``'s background response while it has no stored record
        yet (queued or running), else None."""
        with store_errors("Background responses"):
            raw_owner, raw = await self._redis.hmget(
                self._key(response_id, "state"), ["owner", "input_items"]
            )
        if raw is None or _text(raw_owner) != owner:
            return None
        items: list[dict[str, Any]] = from_stored_json(raw)
        return items

    async def events_after(self, response_id: str, sequence_number: int) -> list[dict[str, Any]]:
        """Stream events with a greater sequence number, in order."""
        with store_errors("Background responses"):
            raws = await self._redis.lrange(
                self._key(response_id, "events"), sequence_number + 1, -1
            )
        return [from_stored_json(raw) for raw in raws]

    async def ask_cancel(self, response_id: str) -> None:
        with store_errors("Background responses"):
            await self._redis.set(self._key(response_id, "cancel"), "1", ex=self._ttl_s)

    async def keep_running(self, response_id: str, owner: str) -> bool:
        """Renew the lease; False once a cancellation was asked, or once the lease had lapsed
        (the response was marked lost meanwhile: the run must stop)."""
        with store_errors("Background responses"):
            async with self._redis.pipeline(transaction=False) as pipe:
                pipe.set(self._key(response_id, "lease"), "1", px=self.lease_ms, xx=True)
                pipe.exists(self._key(response_id, "cancel"))
                renewed, cancel = await pipe.execute()
            await self._renew(keys=[self._active(owner)], args=[self.lease_ms, response_id])
        return bool(renewed) and not cancel

    async def forget(self, response_id: str) -> None:
        """Delete everything kept of a response that has ended (the caller checked whose it
        is): its state and its stream events go with its stored record."""
        with store_errors("Background responses"):
            await self._redis.delete(
                *(self._key(response_id, p) for p in ("state", "events", "cancel", "lease"))
            )

    async def finish(self, response_id: str, owner: str) -> None:
        """The run is over (however it ended): it no longer counts against the key's limit,
        and its input items are its stored record's."""
        with store_errors("Background responses"):
            async with self._redis.pipeline(transaction=False) as pipe:
                pipe.zrem(self._active(owner), response_id)
                pipe.delete(self._key(response_id, "lease"))
                pipe.hdel(self._key(response_id, "state"), "input_items")
                await pipe.execute()
