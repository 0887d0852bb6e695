"""Assembling one model turn from streamed pieces."""

from __future__ import annotations

from app.engine.events import ClientToolCallDelta, TextDelta
from app.engine.turn import TurnAssembler
from app.llm.client import ModelChunk, ToolCallDelta


def test_pieces_assemble_and_only_client_calls_are_visible() -> None:
    turn = TurnAssembler({"get_weather"})
    seen = []
    for chunk in [
        ModelChunk(text="Let me "),
        ModelChunk(text="check."),
        ModelChunk(tool_calls=(ToolCallDelta(index=0, id="c1", name="calc__add"),)),
        ModelChunk(tool_calls=(ToolCallDelta(index=0, arguments='{"a": 1}'),)),
        ModelChunk(tool_calls=(ToolCallDelta(index=1, id="c2", name="get_weather"),)),
        ModelChunk(tool_calls=(ToolCallDelta(index=1, arguments='{"city"'),)),
        ModelChunk(tool_calls=(ToolCallDelta(index=1, arguments=': "Oslo"}'),)),
        ModelChunk(finish_reason="tool_calls"),
    ]:
        seen += turn.add(chunk)
    assert seen == [
        TextDelta(text="Let me "),
        TextDelta(text="check."),
        ClientToolCallDelta(index=0, call_id="c2", name="get_weather", arguments=""),
        ClientToolCallDelta(index=0, call_id=None, name=None, arguments='{"city"'),
        ClientToolCallDelta(index=0, call_id=None, name=None, arguments=': "Oslo"}'),
    ]
    assert [c.name for c in turn.server_calls()] == ["calc__add"]
    assert turn.client_calls()[0].arguments == '{"city": "Oslo"}'
    message = turn.assistant_message()
    assert message["content"] == "Let me check."
    assert len(message["tool_calls"]) == 2
    assert turn.finish_reason == "tool_calls"


def test_plain_answer_has_no_tool_calls_field() -> None:
    turn = TurnAssembler(set())
    turn.add(ModelChunk(text="hi", finish_reason="stop"))
    assert turn.assistant_message() == {"role": "assistant", "content": "hi"}
