"""Redis errors become ``StoreUnavailable`` here, once, where they enter."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from redis.exceptions import RedisError

from app.errors import StoreUnavailable
from app.metrics import REDIS_ERRORS


@contextmanager
def store_errors(what: str) -> Iterator[None]:
    """Re-raise Redis failures as ``StoreUnavailable`` (503): state we need is unreachable."""
    try:
        yield
    except RedisError as exc:
        REDIS_ERRORS.labels(what).inc()
        raise StoreUnavailable(f"{what} are unavailable right now; try again.") from exc
