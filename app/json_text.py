"""JSON text of what we send and store: by orjson (the stdlib's encoder was a visible share of a
run, profiled), or, for what orjson refuses (an integer past 64 bits, a lone surrogate a server
sent), by the stdlib as before."""

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
