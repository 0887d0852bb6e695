"""One model turn: assemble streamed pieces into an assistant message and a typed decision."""

from __future__ import annotations

from dataclasses import dataclass, field

from app.engine.events import ClientToolCallDelta, TextDelta, ToolCall
from app.llm.client import Message, ModelChunk


@dataclass(slots=True)
class _Call:
    id: str = ""
    name: str = ""
    arguments: str = ""
    client_index: int | None = None
    """Set when the call is to one of the caller's own tools."""

    def as_tool_call(self) -> ToolCall:
        return ToolCall(self.id, self.name, self.arguments)


@dataclass(slots=True)
class TurnAssembler:
    """Collects a turn's chunks; reports the parts a caller sees as they arrive."""

    client_tool_names: set[str]
    text: str = ""
    finish_reason: str | None = None
    cut_by_budget: bool = False
    """The call was allowed fewer output tokens than asked, because of the budget left."""
    _calls: dict[int, _Call] = field(default_factory=dict)
    _client_count: int = 0

    def add(self, chunk: ModelChunk) -> list[TextDelta | ClientToolCallDelta]:
        """Absorb a chunk; return the events it makes visible."""
        visible: list[TextDelta | ClientToolCallDelta] = []
        if chunk.text:
            self.text += chunk.text
            visible.append(TextDelta(text=chunk.text))
        for piece in chunk.tool_calls:
            call = self._calls.setdefault(piece.index, _Call())
            first = not call.name and bool(piece.name)
            call.id = call.id or piece.id or ""
            call.name += piece.name or ""
            call.arguments += piece.arguments
            if first and call.name in self.client_tool_names:
                call.client_index = self._client_count
                self._client_count += 1
            if call.client_index is not None:
                visible.append(
                    ClientToolCallDelta(
                        index=call.client_index,
                        call_id=piece.id if first else None,
                        name=call.name if first else None,
                        arguments=piece.arguments,
                    )
                )
        if chunk.finish_reason:
            self.finish_reason = chunk.finish_reason
        return visible

    def calls(self) -> list[ToolCall]:
        return [c.as_tool_call() for _, c in sorted(self._calls.items())]

    def client_calls(self) -> list[ToolCall]:
        return [
            c.as_tool_call() for _, c in sorted(self._calls.items()) if c.client_index is not None
        ]

    def server_calls(self) -> list[ToolCall]:
        """Calls that are ours to run (MCP tools, or names no one offered)."""
        return [c.as_tool_call() for _, c in sorted(self._calls.items()) if c.client_index is None]

    def assistant_message(self) -> Message:
        message: Message = {"role": "assistant", "content": self.text or None}
        if self._calls:
            message["tool_calls"] = [call.as_chat() for call in self.calls()]
        return message
