"""Restoring the MCP turns a Chat Completions client never saw (see ``app/store/hidden_turns``)."""

from __future__ import annotations

from app.llm.client import Message
from app.store.hidden_turns import HiddenTurns


def _first_call_id(message: Message) -> str | None:
    calls = message.get("tool_calls") if message.get("role") == "assistant" else None
    if calls and isinstance(calls, list) and isinstance(calls[0], dict):
        return str(calls[0].get("id"))
    return None


async def restore_hidden_turns(
    messages: list[Message], hidden: HiddenTurns, key_id: str
) -> list[Message]:
    """Replace each assistant message we shortened with the full turns it stood for."""
    call_ids = [_first_call_id(m) for m in messages]
    stored = iter(await hidden.load_many(key_id, [c for c in call_ids if c is not None]))
    restored: list[Message] = []
    for message, call_id in zip(messages, call_ids, strict=True):
        turns = next(stored) if call_id is not None else None
        restored.extend(turns if turns is not None else [message])
    return restored
