"""MCP turns a Chat Completions client never saw, kept for its continuation.

When a run stops for the client's own function tools, the response shows only those calls.
The MCP calls and results of the same run are stored here, keyed by the returned tool-call
ids, and spliced back when the client posts the conversation again, so the model still sees
everything it did (OpenAI's Chat Completions is stateless; this is our state for it).
"""

from __future__ import annotations

from typing import Any

from app.json_text import from_stored_json, json_bytes
from app.store.connect import RedisClient
from app.store.errors import store_errors

Message = dict[str, Any]


class HiddenTurns:
    """Hidden messages per (caller, tool-call id)."""

    def __init__(self, redis: RedisClient, prefix: str, ttl_s: int) -> None:
        self._redis = redis
        self._prefix = f"{prefix}hidden:"
        self._ttl_s = ttl_s

    def _key(self, key_id: str, call_id: str) -> str:
        return f"{self._prefix}{{{key_id}}}:{call_id}"  # one slot per caller: MGET in a cluster

    async def save(self, key_id: str, call_ids: list[str], messages: list[Message]) -> None:
        """Store ``messages`` (the run's full assistant turns) under every visible call id."""
        payload = json_bytes(messages)
        with store_errors("Hidden MCP turns"):
            async with self._redis.pipeline(transaction=True) as pipe:
                for call_id in call_ids:
                    pipe.set(self._key(key_id, call_id), payload, ex=self._ttl_s)
                await pipe.execute()

    async def load_many(self, key_id: str, call_ids: list[str]) -> list[list[Message] | None]:
        """The stored turns for each call id (None where nothing is stored), in one round trip."""
        if not call_ids:
            return []
        with store_errors("Hidden MCP turns"):
            raws = await self._redis.mget([self._key(key_id, c) for c in call_ids])
        return [None if raw is None else list(from_stored_json(raw)) for raw in raws]
