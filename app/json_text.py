"""JSON text of what we send and store: by orjson (the stdlib's encoder was a visible share of a
run, profiled), or, for what orjson refuses (an integer past 64 bits, a lone surrogate a server
sent), by the stdlib as before; and what we stored, read back by what wrote it."""

from __future__ import annotations

import json
from typing import Any

import orjson


def json_bytes(data: Any) -> bytes:
    """``data`` as UTF-8 JSON."""
    try:
        return orjson.dumps(data)
    except TypeError:  # orjson.JSONEncodeError is one
        return json.dumps(data).encode()


def to_json(data: Any) -> str:
    """``data`` as JSON text."""
    return json_bytes(data).decode()


def from_stored_json(raw: bytes | str) -> Any:
    """JSON that ``json_bytes`` wrote, read by what wrote it. orjson never puts ``": "`` outside
    a string; the stdlib (orjson's fallback, and whatever was stored before orjson) puts it
    after every key. So text without it is read by orjson (a third of the stdlib's CPU); any
    other by the stdlib, exactly as before: orjson would read an integer past 64 bits as a
    float. Compact stdlib text orjson cannot read (a lone surrogate) goes to the stdlib too."""
    if isinstance(raw, str):  # Redis answers bytes; a str is typed, not expected
        raw = raw.encode()
    if b'": ' in raw:
        return json.loads(raw)
    try:
        return orjson.loads(raw)
    except orjson.JSONDecodeError:
        return json.loads(raw)
