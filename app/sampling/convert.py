"""MCP sampling requests to chat model calls, and chat answers back to MCP results (pure)."""

from __future__ import annotations

import json
from typing import Any

import mcp_types as types

from app.llm.client import Message
from app.mcp.results import result_text

Block = (
    types.TextContent
    | types.ImageContent
    | types.AudioContent
    | types.ToolUseContent
    | (types.ToolResultContent)
)

_STOP_REASONS = {
    "stop": "endTurn",
    "length": "maxTokens",
    "tool_calls": "toolUse",
    "content_filter": "endTurn",
}


def _blocks(content: Block | list[Block]) -> list[Block]:
    return content if isinstance(content, list) else [content]


def _part(block: Block) -> dict[str, Any]:
    match block:
        case types.TextContent():
            return {"type": "text", "text": block.text}
        case types.ImageContent():
            return {
                "type": "image_url",
                "image_url": {"url": f"data:{block.mime_type};base64,{block.data}"},
            }
        case types.AudioContent():
            audio_format = block.mime_type.rsplit("/", 1)[-1].replace("mpeg", "mp3")
            return {
                "type": "input_audio",
                "input_audio": {"data": block.data, "format": audio_format},
            }
    raise ValueError(f"unsupported sampling content: {block.type}")


def _message(message: types.SamplingMessage) -> list[Message]:
    """One sampling message as chat messages (tool uses and results split out)."""
    blocks = _blocks(message.content)
    uses = [b for b in blocks if isinstance(b, types.ToolUseContent)]
    results = [b for b in blocks if isinstance(b, types.ToolResultContent)]
    parts = [
        _part(b)
        for b in blocks
        if not isinstance(b, types.ToolUseContent | types.ToolResultContent)
    ]
    out: list[Message] = [
        {
            "role": "tool",
            "tool_call_id": r.tool_use_id,
            "content": result_text(
                types.CallToolResult(
                    content=r.content,
                    structured_content=r.structured_content,
                    is_error=bool(r.is_error),
                )
            ),
        }
        for r in results
    ]
    if parts or uses:
        text_only = all(p["type"] == "text" for p in parts)
        content: Any = "".join(p["text"] for p in parts) if text_only else parts
        chat: Message = {"role": message.role, "content": content or None}
        if uses:
            chat["tool_calls"] = [
                {
                    "id": u.id,
                    "type": "function",
                    "function": {"name": u.name, "arguments": json.dumps(u.input)},
                }
                for u in uses
            ]
        out.append(chat)
    return out


def to_chat(
    params: types.CreateMessageRequestParams, max_tokens: int
) -> tuple[list[Message], list[dict[str, Any]], dict[str, Any]]:
    """Messages, tools and model parameters for a sampling request.

    ``includeContext`` other than "none" is treated as "none": the ``context`` capability is
    not declared, so there is no other context to include.
    """
    messages: list[Message] = []
    if params.system_prompt:
        messages.append({"role": "system", "content": params.system_prompt})
    for message in params.messages:
        messages.extend(_message(message))
    tools = [
        {
            "type": "function",
            "function": {
                "name": tool.name,
                "description": tool.description or "",
                "parameters": tool.input_schema or {"type": "object", "properties": {}},
            },
        }
        for tool in params.tools or []
    ]
    extra: dict[str, Any] = {"max_tokens": max_tokens}
    if params.temperature is not None:
        extra["temperature"] = params.temperature
    if params.stop_sequences:
        extra["stop"] = params.stop_sequences
    if tools and params.tool_choice is not None and params.tool_choice.mode:
        extra["tool_choice"] = params.tool_choice.mode
    return messages, tools, extra


def to_result(
    model: str,
    text: str,
    tool_calls: list[dict[str, Any]],
    finish_reason: str | None,
    *,
    with_tools: bool,
) -> types.CreateMessageResult | (types.CreateMessageResultWithTools):
    """The model's answer as MCP's result; tool calls become ``tool_use`` content."""
    stop = _STOP_REASONS.get(finish_reason or "stop", "endTurn")
    if not with_tools:
        return types.CreateMessageResult(
            role="assistant",
            model=model,
            stop_reason=stop,
            content=types.TextContent(type="text", text=text),
        )
    content: list[Any] = [types.TextContent(type="text", text=text)] if text else []
    for call in tool_calls:
        try:
            arguments = json.loads(call["function"]["arguments"] or "{}")
        except json.JSONDecodeError:
            arguments = {"_raw": call["function"]["arguments"]}
        content.append(
            types.ToolUseContent(
                type="tool_use", id=call["id"], name=call["function"]["name"], input=arguments
            )
        )
    if tool_calls:
        stop = "toolUse"
    return types.CreateMessageResultWithTools(
        role="assistant",
        model=model,
        stop_reason=stop,
        content=content or [types.TextContent(type="text", text="")],
    )
