"""Restoring the MCP turns a Chat Completions client never saw (see ``app/store/hidden_turns``)."""

from __future__ import annotations

from app.llm.client import Message
from app.store.hidden_turns import HiddenTurns


async def restore_hidden_turns(
    messages: list[Message], hidden: HiddenTurns, key_id: str
) -> list[Message]:
    """Replace each assistant message we shortened with the full turns it stood for."""
    restored: list[Message] = []
    for message in messages:
        calls = message.get("tool_calls") if message.get("role") == "assistant" else None
        stored = None
        if calls and isinstance(calls, list) and isinstance(calls[0], dict):
            stored = await hidden.load(key_id, str(calls[0].get("id")))
        restored.extend(stored if stored is not None else [message])
    return restored
