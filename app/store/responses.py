"""Stored responses (``store: true``), shared by every replica through Redis.

One record per response: its owner (the API key id), the Response object (its output
included), its input items as continuation needs them (fields the API does not define are
dropped), and the ids of the responses it continues (``chain``, oldest first, at most
``CHAIN_IDS``: an older record's own chain reaches further back). A record never copies the
history: ``previous_response_id`` rebuilds the conversation from the chain's records (one
pipelined round trip per ``CHAIN_IDS`` turns), so a chain of N turns keeps N records' worth,
not N² (records of the earlier layout, which held a whole ``conversation``, are still read).

Saving a record renews its chain's records for as long as it lives, so a conversation's
earlier turns never expire before its latest. A deleted response ends the continuation of
those that followed it (said so, with a 404).

Each key has quotas (``stored_responses_max_per_key``, ``..._max_bytes_per_key``), counted in
Redis by one atomic script (per key: a hash of record sizes, their running sum, and a set of
expiry times: expired records leave the count by themselves). A request that would store is
refused with 429 while its key is at a quota, before anything runs; a record that takes a key
over it (requests racing) is still kept. Credentials are never part of a record: tools are
stored as echoed.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from typing import Any

import orjson
from redis.asyncio.cluster import RedisCluster

from app.errors import NotFound, StorageQuotaExceeded
from app.json_text import json_bytes
from app.store.connect import RedisClient
from app.store.errors import store_errors

CHAIN_IDS = 256
"""Ancestor ids a record names itself; beyond them its oldest ancestor's chain goes on."""

_ITEM_FIELDS: dict[str, frozenset[str]] = {
    kind: frozenset(names.split()) | {"type", "id", "status"}
    for kind, names in {
        "message": "role content",
        "function_call": "call_id name arguments",
        "function_call_output": "call_id output",
        "tool_search_call": "call_id arguments execution",
        "tool_search_output": "call_id tools execution",
        "mcp_call": "server_label name arguments output error approval_request_id",
        "mcp_list_tools": "server_label tools error",
        "mcp_approval_request": "server_label name arguments",
        "mcp_approval_response": "approval_request_id approve reason",
        "reasoning": "summary content encrypted_content",
    }.items()
}
"""What each input item type keeps: OpenAI's fields for it. Unknown types are kept whole
(``fold`` has already refused what it cannot read)."""

_QUOTA = """
-- KEYS: sizes (hash id -> bytes), exp (zset id -> expiry), total (the sizes' sum); then, to
-- write the record here too (one node: all keys in one place), its key and its ancestors'.
-- ARGV: now, id, bytes (0: check only; -1: forget the id), expires_at, max_count, max_bytes,
-- the record's text and seconds to live (used with its key), then ancestor ids whose expiry is
-- renewed. Returns {over, count, bytes} as they were before this record (over: 1 when at
-- either quota). Expired records leave the count here, so a check costs what expired since
-- the last one, not the key's whole history.
if #KEYS > 3 then
  redis.call('SET', KEYS[4], ARGV[7], 'EX', ARGV[8])
  for k = 5, #KEYS do redis.call('EXPIRE', KEYS[k], ARGV[8]) end
end
local function forget(id)
  local size = redis.call('HGET', KEYS[1], id)
  if size then
    redis.call('HDEL', KEYS[1], id)
    redis.call('DECRBY', KEYS[3], size)
  end
  redis.call('ZREM', KEYS[2], id)
end
local now, size, expires = tonumber(ARGV[1]), tonumber(ARGV[3]), tonumber(ARGV[4])
for _, id in ipairs(redis.call('ZRANGEBYSCORE', KEYS[2], '-inf', now)) do forget(id) end
if size < 0 then
  forget(ARGV[2])
  return {0, 0, 0}
end
local count = redis.call('HLEN', KEYS[1])
local bytes = tonumber(redis.call('GET', KEYS[3]) or '0')
local over = (count >= tonumber(ARGV[5]) or bytes >= tonumber(ARGV[6])) and 1 or 0
if size > 0 then
  forget(ARGV[2])  -- saved again: its new size replaces the old
  redis.call('HSET', KEYS[1], ARGV[2], size)
  redis.call('INCRBY', KEYS[3], size)
  redis.call('ZADD', KEYS[2], expires, ARGV[2])
  for i = 9, #ARGV do redis.call('ZADD', KEYS[2], 'XX', expires, ARGV[i]) end
  for k = 1, 3 do redis.call('EXPIRE', KEYS[k], math.ceil(expires - now) + 60) end
end
return {over, count, bytes}
"""


def stored_items(items: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """``items`` with only the fields continuation (and ``input_items``) needs."""
    kept = []
    for item in items:
        allowed = _ITEM_FIELDS.get(str(item.get("type")))
        kept.append(item if allowed is None else {k: v for k, v in item.items() if k in allowed})
    return kept


@dataclass(frozen=True, slots=True)
class StoredResponse:
    """One stored response, as kept in Redis."""

    owner: str
    response: dict[str, Any]
    input_items: list[dict[str, Any]]
    chain: list[str] = field(default_factory=list)
    """Ids of the responses this one continues, oldest first (at most ``CHAIN_IDS``)."""
    conversation: list[dict[str, Any]] | None = None
    """The earlier layout only: every item up to this response's output."""


def _record_data(raw: bytes) -> dict[str, Any]:
    """A record's JSON, read by what wrote it (``json_bytes``): orjson's compact text by orjson
    (a third of the stdlib's CPU), the stdlib's (``": "``: what orjson refused to write, such as
    an integer past 64 bits, and records older than orjson) by the stdlib, which reads such an
    integer exactly where orjson would make it a float."""
    if raw.startswith(b'{"owner":"'):
        data: dict[str, Any] = orjson.loads(raw)
    else:
        data = json.loads(raw)
    return data


@dataclass(frozen=True, slots=True)
class Quotas:
    max_count: int
    max_bytes: int


QUOTA_KNOWN_S = 1.0
"""How long an owner this process saw under its quotas (at a check or a save) is taken to be
still under them without asking Redis again."""
_KNOWN_OWNERS = 10_000


class ResponseStore:
    """Stored responses by id, visible to their owner only."""

    def __init__(
        self,
        redis: RedisClient,
        prefix: str,
        ttl_s: int,
        quotas: Quotas,
        *,
        quota_known_s: float = QUOTA_KNOWN_S,
    ) -> None:
        self._redis = redis
        self._prefix = f"{prefix}resp:"
        self._quota_prefix = f"{prefix}respq:"
        self._ttl_s = ttl_s
        self._quotas = quotas
        self._quota = redis.register_script(_QUOTA)
        self._quota_known_s = quota_known_s
        self._under_until: dict[str, float] = {}
        """Owners seen under their quotas, until when that is trusted (monotonic clock)."""

    def _quota_keys(self, owner: str) -> list[str]:
        tagged = f"{self._quota_prefix}{{{owner}}}"  # one slot per key on a cluster
        return [f"{tagged}:sizes", f"{tagged}:exp", f"{tagged}:total"]

    def _quota_args(
        self,
        record_id: str = "-",
        size: int = 0,
        renew: list[str] | None = None,
        text: bytes = b"",
    ) -> list[Any]:
        now = time.time()
        args: list[Any] = [now, record_id, size, now + self._ttl_s]
        limits = [self._quotas.max_count, self._quotas.max_bytes]
        return [*args, *limits, text, self._ttl_s, *(renew or [])]

    async def _count(
        self, owner: str, record_id: str = "-", size: int = 0, renew: list[str] | None = None
    ) -> tuple[bool, int, int]:
        """The quota script (see ``_QUOTA``) for ``owner``: check, count a record, or forget one."""
        args = self._quota_args(record_id, size, renew)
        with store_errors("Stored responses"):
            over, count, used = await self._quota(keys=self._quota_keys(owner), args=args)
        return bool(over), int(count), int(used)

    async def check_quota(self, owner: str) -> None:
        """``StorageQuotaExceeded`` (429) while ``owner`` keeps as many responses, or as many
        bytes of them, as its quotas allow."""
        # A round trip fewer per stored response: an owner this process saw under its quotas
        # within ``quota_known_s`` passes without one. Only saves on other replicas in that
        # window go unseen, as saves of runs in flight already do (each checks before it runs
        # and is counted after); a save here that reaches a quota is seen at once.
        if time.monotonic() < self._under_until.get(owner, 0.0):
            return
        over, count, used = await self._count(owner)
        if over:
            raise StorageQuotaExceeded(count, self._quotas.max_count, used, self._quotas.max_bytes)
        self._saw(owner, count, used)

    def _saw(self, owner: str, count: int, used: int) -> None:
        """Remember ``owner`` as under its quotas for a while if it is (forget it if not)."""
        if count >= self._quotas.max_count or used >= self._quotas.max_bytes:
            self._under_until.pop(owner, None)
            return
        if len(self._under_until) >= _KNOWN_OWNERS:
            self._under_until.clear()  # a bound, not a cache policy: the next checks ask Redis
        self._under_until[owner] = time.monotonic() + self._quota_known_s

    async def save(
        self,
        *,
        owner: str,
        response: dict[str, Any],
        input_items: list[dict[str, Any]],
        previous: StoredResponse | None,
    ) -> None:
        """Keep ``response`` (continuing ``previous``, if any) and count it to its owner."""
        chain: list[str] = []
        if previous is not None:
            chain = [*previous.chain, previous.response["id"]][-CHAIN_IDS:]
        record = {"owner": owner, "response": response, "input_items": stored_items(input_items)}
        text = json_bytes(record | {"chain": chain})
        if isinstance(self._redis, RedisCluster):
            # The record and its owner's quota keys are in different slots: the record and
            # its chain in a pipeline, then the count.
            with store_errors("Stored responses"):
                async with self._redis.pipeline(transaction=False) as pipe:
                    pipe.set(self._prefix + response["id"], text, ex=self._ttl_s)
                    for ancestor in chain:  # the conversation lives as long as its latest turn
                        pipe.expire(self._prefix + ancestor, self._ttl_s)
                    await pipe.execute()
            counted = await self._count(owner, response["id"], len(text), chain)
        else:
            # One script writes the record, renews its chain and counts it (a pipeline of the
            # same commands cost about 45 us more CPU a stored response, measured).
            keys = self._quota_keys(owner)
            keys += [self._prefix + key for key in (response["id"], *chain)]
            args = self._quota_args(response["id"], len(text), chain, text)
            with store_errors("Stored responses"):
                counted = await self._quota(keys=keys, args=args)
        _, count, used = (int(value) for value in counted)
        self._saw(owner, count + 1, used + len(text))  # as they were before it, plus it

    async def _records(self, ids: list[str]) -> list[StoredResponse | None]:
        # One MGET, not a GET each: pipelined, redis-py's work per command was two thirds of
        # reading a chain's 120 records (profiled). A cluster's records are in different slots:
        # redis-py splits the MGET by slot.
        keys = [self._prefix + record_id for record_id in ids]
        with store_errors("Stored responses"):
            if isinstance(self._redis, RedisCluster):
                raws = await self._redis.mget_nonatomic(keys)
            else:
                raws = await self._redis.mget(keys)
        return [None if raw is None else StoredResponse(**_record_data(raw)) for raw in raws]

    async def load(self, response_id: str, owner: str, param: str | None = None) -> StoredResponse:
        """The record, if it exists and belongs to ``owner``; otherwise ``NotFound`` (naming
        ``param``, the request field that named it, if any)."""
        (record,) = await self._records([response_id])
        if record is None or record.owner != owner:
            raise NotFound(f"Response with id '{response_id}' not found.", param=param)
        return record

    async def conversation(self, record: StoredResponse) -> list[dict[str, Any]]:
        """Every item up to and including ``record``'s output, from its chain's records."""
        records = [record]
        while records[0].conversation is None and records[0].chain:
            ids = records[0].chain
            earlier = await self._records(ids)
            missing = [i for i, r in zip(ids, earlier, strict=True) if r is None]
            if missing:
                raise NotFound(
                    f"An earlier response of this conversation ('{missing[0]}') was deleted "
                    "or has expired: it cannot be continued."
                )
            records[:0] = [r for r in earlier if r is not None]
        items: list[dict[str, Any]] = []
        for each in records:
            if each.conversation is not None:  # the earlier layout: everything up to it
                items = list(each.conversation)
            else:
                items += [*each.input_items, *each.response.get("output", [])]
        return items

    async def delete(self, response_id: str, owner: str) -> None:
        await self.load(response_id, owner)
        with store_errors("Stored responses"):
            await self._redis.delete(self._prefix + response_id)
        await self._count(owner, response_id, -1)  # its room is free again
