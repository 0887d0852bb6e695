"""Item and object ids in OpenAI's Responses shapes: the one place that knows the prefixes.

Ids of call items carry the model's call id after the prefix (``mcp_``, ``mcpr_``, ``fc_``), so
one call keeps the same ids across responses and the call id can be read back from an item.
The engine deals in call ids only.
"""

from __future__ import annotations

from app.ids import stored_id

_CALL_PREFIXES = ("mcpr_", "mcp_", "fc_", "tsc_", "tso_")


def _new(prefix: str) -> str:
    return f"{prefix}_{stored_id()}"


def response_id() -> str:
    return _new("resp")


def message_id() -> str:
    return _new("msg")


def item_id() -> str:
    """An input item the caller gave without an id."""
    return _new("item")


def list_tools_id() -> str:
    return _new("mcpl")


def mcp_call_id(call_id: str) -> str:
    return f"mcp_{call_id}"


def approval_request_id(call_id: str) -> str:
    return f"mcpr_{call_id}"


def function_call_id(call_id: str) -> str:
    return f"fc_{call_id}"


def tool_search_call_id(call_id: str) -> str:
    return f"tsc_{call_id}"


def tool_search_output_id(call_id: str) -> str:
    return f"tso_{call_id}"


def call_id_of(item_id: str) -> str:
    """The model's call id inside one of our item ids (an id we did not make is kept whole)."""
    for prefix in _CALL_PREFIXES:
        if item_id.startswith(prefix):
            return item_id[len(prefix) :]
    return item_id
