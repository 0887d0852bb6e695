"""Sampling requests to chat calls and answers back (pure)."""

from __future__ import annotations

import mcp_types as types

from app.sampling.convert import to_chat, to_result


def test_every_content_kind_maps_to_chat() -> None:
    params = types.CreateMessageRequestParams(
        system_prompt="sys",
        temperature=0.2,
        stop_sequences=["END"],
        max_tokens=999,
        messages=[
            types.SamplingMessage(
                role="user",
                content=[
                    types.TextContent(type="text", text="look: "),
                    types.ImageContent(type="image", data="aGk=", mime_type="image/png"),
                    types.AudioContent(type="audio", data="aGk=", mime_type="audio/mpeg"),
                ],
            ),
            types.SamplingMessage(
                role="assistant",
                content=types.ToolUseContent(
                    type="tool_use", id="t1", name="lookup", input={"word": "x"}
                ),
            ),
            types.SamplingMessage(
                role="user",
                content=types.ToolResultContent(
                    type="tool_result",
                    tool_use_id="t1",
                    content=[types.TextContent(type="text", text="found")],
                ),
            ),
        ],
        tools=[types.Tool(name="lookup", input_schema={"type": "object"})],
        tool_choice=types.ToolChoice(mode="required"),
    )
    messages, tools, extra = to_chat(params, max_tokens=100)
    assert messages[0] == {"role": "system", "content": "sys"}
    assert messages[1]["content"] == [
        {"type": "text", "text": "look: "},
        {"type": "image_url", "image_url": {"url": "data:image/png;base64,aGk="}},
        {"type": "input_audio", "input_audio": {"data": "aGk=", "format": "mp3"}},
    ]
    assert messages[2]["tool_calls"][0]["function"] == {
        "name": "lookup",
        "arguments": '{"word": "x"}',
    }
    assert messages[3] == {"role": "tool", "tool_call_id": "t1", "content": "found"}
    assert tools[0]["function"]["name"] == "lookup"
    assert extra == {
        "max_tokens": 100,
        "temperature": 0.2,
        "stop": ["END"],
        "tool_choice": "required",
    }


def test_answers_map_back_with_stop_reasons() -> None:
    plain = to_result("m", "hi", [], "length", with_tools=False)
    assert plain.model == "m" and plain.stop_reason == "maxTokens"
    assert plain.content == types.TextContent(type="text", text="hi")
    calls = [{"id": "c1", "function": {"name": "lookup", "arguments": '{"word": "y"}'}}]
    with_tools = to_result("m", "", calls, "tool_calls", with_tools=True)
    assert with_tools.stop_reason == "toolUse"
    assert with_tools.content == [
        types.ToolUseContent(type="tool_use", id="c1", name="lookup", input={"word": "y"})
    ]
