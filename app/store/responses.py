"""Stored responses (``store: true``), shared by every replica through Redis.

One record per response: its owner (the API key id), the Response object, its input items,
and the whole conversation up to and including its output (what ``previous_response_id``
continues). Credentials are never part of a record: tools are stored as echoed, without them.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, fields
from typing import Any

from app.errors import NotFound
from app.store.connect import RedisClient
from app.store.errors import store_errors


@dataclass(frozen=True, slots=True)
class StoredResponse:
    """One stored response, as kept in Redis."""

    owner: str
    response: dict[str, Any]
    input_items: list[dict[str, Any]]
    conversation: list[dict[str, Any]]
    """Every item so far: earlier responses' conversation, this input, this output."""


def _dumps(record: StoredResponse) -> str:
    """The record as JSON. Not ``dataclasses.asdict``: it deep-copies the whole conversation
    first, which was 4 % of a stored run's CPU."""
    return json.dumps({f.name: getattr(record, f.name) for f in fields(record)})


class ResponseStore:
    """Stored responses by id, visible to their owner only."""

    def __init__(self, redis: RedisClient, prefix: str, ttl_s: int) -> None:
        self._redis = redis
        self._prefix = f"{prefix}resp:"
        self._ttl_s = ttl_s

    async def save(self, record: StoredResponse) -> None:
        with store_errors("Stored responses"):
            await self._redis.set(
                self._prefix + record.response["id"], _dumps(record), ex=self._ttl_s
            )

    async def load(self, response_id: str, owner: str) -> StoredResponse:
        """The record, if it exists and belongs to ``owner``; otherwise ``NotFound``."""
        with store_errors("Stored responses"):
            raw = await self._redis.get(self._prefix + response_id)
        record = None if raw is None else StoredResponse(**json.loads(raw))
        if record is None or record.owner != owner:
            raise NotFound(f"Response with id '{response_id}' not found.")
        return record

    async def delete(self, response_id: str, owner: str) -> None:
        await self.load(response_id, owner)
        with store_errors("Stored responses"):
            await self._redis.delete(self._prefix + response_id)
