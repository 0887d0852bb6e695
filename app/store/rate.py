"""Fixed-window rate limits shared by every replica."""

from __future__ import annotations

import time

from app.store.connect import RedisClient
from app.store.errors import store_errors


class RateLimiter:
    """Fixed-window request counts in Redis, shared by every replica."""

    def __init__(self, redis: RedisClient, prefix: str) -> None:
        self._redis = redis
        self._prefix = f"{prefix}rate:"

    async def allow(self, key: str, limit: int, window_s: int = 60) -> bool:
        """Count one event for ``key``; False once ``limit`` events fell in this window."""
        window = int(time.time() // window_s)
        name = f"{self._prefix}{key}:{window}"
        with store_errors("Rate limits"):
            async with self._redis.pipeline(transaction=True) as pipe:
                pipe.incr(name)
                pipe.expire(name, window_s * 2)
                count, _ = await pipe.execute()
        return int(count) <= limit
