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
    call_ids = {
        i: call_id for i, m in enumerate(messages) if (call_id := _first_call_id(m)) is not None
    }
    if not call_ids:
        return messages  # no tool calls: nothing was shortened (a long chat is not copied)
    stored = dict(
        zip(call_ids, await hidden.load_many(key_id, list(call_ids.values())), strict=True)
    )
    restored: list[Message] = []
    for i, message in enumerate(messages):
        turns = stored.get(i)
        restored.extend(turns if turns is not None else [message])
    return restored
