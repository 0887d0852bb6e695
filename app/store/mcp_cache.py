"""Redis-backed caches for MCP: tool lists (the SDK's response cache) and server eras.

Tool lists go through the ``mcp`` SDK's own ``ClientResponseCache``, which already keys entries
by server, protocol version and credential partition and honours a 2026-07-28 server's
``ttlMs`` and ``cacheScope``; this module only gives it a store every replica shares.
A server's era (its ``server/discover`` result, "legacy" or "sse") is remembered so a modern
server costs no probe per request and an older one no failed probe.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import math
import time
from typing import Literal

import mcp_types as types
from mcp.client.caching import CacheEntry, CacheKey
from pydantic import BaseModel, ValidationError
from redis.exceptions import RedisError

from app.metrics import REDIS_ERRORS, TOOL_LISTS, series
from app.store.connect import RedisClient

logger = logging.getLogger(__name__)

_RESULT_MODELS: dict[str, type[BaseModel]] = {
    "tools/list": types.ListToolsResult,
    "prompts/list": types.ListPromptsResult,
    "resources/list": types.ListResourcesResult,
    "resources/templates/list": types.ListResourceTemplatesResult,
    "resources/read": types.ReadResourceResult,
}


def _hashed(*parts: str) -> str:
    return hashlib.sha256(json.dumps(parts).encode()).hexdigest()


class RedisResponseCacheStore:
    """The SDK's ``ResponseCacheStore`` on Redis; an entry expires in Redis when it goes stale."""

    def __init__(self, redis: RedisClient, prefix: str) -> None:
        self._redis = redis
        self._prefix = f"{prefix}mcp:list:"

    def _key(self, key: CacheKey) -> str:
        return self._prefix + _hashed(key.method, key.params_key, key.partition)

    async def get(self, key: CacheKey) -> CacheEntry | None:
        raw = await self._redis.get(self._key(key))
        model = _RESULT_MODELS.get(key.method)
        if key.method == "tools/list":
            series(TOOL_LISTS, "miss" if raw is None else "hit").inc()
        if raw is None or model is None:
            return None
        try:
            data = json.loads(raw)
            value = model.model_validate(data["value"])
        except (ValueError, KeyError, ValidationError):
            return None  # a wrong-shape entry is a miss
        return CacheEntry(value=value, scope=data["scope"], expires_at=data["expires_at"])

    async def set(self, key: CacheKey, entry: CacheEntry) -> None:
        if entry.expires_at is None:
            return
        ttl_ms = math.ceil((entry.expires_at - time.time()) * 1000)
        if ttl_ms <= 0:
            return
        payload = {
            "value": entry.value.model_dump(mode="json", by_alias=True, exclude_none=True),
            "scope": entry.scope,
            "expires_at": entry.expires_at,
        }
        await self._redis.set(self._key(key), json.dumps(payload), px=ttl_ms)

    async def delete(self, key: CacheKey) -> None:
        await self._redis.delete(self._key(key))

    async def clear(self) -> None:
        async for name in self._redis.scan_iter(match=self._prefix + "*"):
            await self._redis.delete(name)


Era = types.DiscoverResult | Literal["legacy", "sse"]
"""A modern server's discover result; a 2025-11-25 streamable HTTP server; an SSE-only one."""


class EraStore:
    """Remembers which protocol era a server speaks. A cache: Redis failures are misses."""

    def __init__(self, redis: RedisClient, prefix: str, ttl_s: int) -> None:
        self._redis = redis
        self._prefix = f"{prefix}mcp:era:"
        self._ttl_s = ttl_s

    async def get(self, target: str) -> Era | None:
        try:
            raw = await self._redis.get(self._prefix + _hashed(target))
        except RedisError:
            REDIS_ERRORS.labels("Protocol eras").inc()
            logger.warning("era cache unavailable (Redis): probing the server instead")
            return None
        if raw in (b"legacy", b"sse"):
            return "legacy" if raw == b"legacy" else "sse"
        try:
            return None if raw is None else types.DiscoverResult.model_validate_json(raw)
        except ValidationError:
            return None

    async def set(self, target: str, era: Era) -> None:
        if self._ttl_s <= 0:
            return
        raw = era if isinstance(era, str) else era.model_dump_json(by_alias=True, exclude_none=True)
        with contextlib.suppress(RedisError):  # a cache that cannot be written is just cold
            await self._redis.set(self._prefix + _hashed(target), raw, ex=self._ttl_s)

    async def forget(self, target: str) -> None:
        with contextlib.suppress(RedisError):
            await self._redis.delete(self._prefix + _hashed(target))
