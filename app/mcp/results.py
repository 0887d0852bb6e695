"""Turn an MCP ``CallToolResult`` into the text a chat model reads (and ``mcp_call.output``).

The spec's text content is the part meant for the model; ``structuredContent`` is for programs.
So text parts are joined, images, audio and resources are summarised so the model knows
something was there and what was left out, and content whose ``annotations.audience`` is only
``["user"]`` is not sent to the model at all. ``structuredContent`` is sent (as JSON) only when
the result has no text, or when structured results are preferred for the server (an
operator's or a caller's choice), in which case it replaces the text that echoes it. This is
what the OpenAI Agents SDK, LiteLLM and most MCP hosts give a model: for a tool returning ``5``
the model reads ``5``, not ``{"result": 5}``.
"""

from __future__ import annotations

import json
from typing import Any

import mcp_types as types

TRUNCATION_MARKER = "\n[toolbridge: output truncated from {total} to {kept} characters]"


def _describe(block: types.ContentBlock) -> str:
    match block:
        case types.TextContent():
            return block.text
        case types.ImageContent():
            return f"[image omitted: {block.mime_type}, {len(block.data) * 3 // 4} bytes]"
        case types.AudioContent():
            return f"[audio omitted: {block.mime_type}, {len(block.data) * 3 // 4} bytes]"
        case types.ResourceLink():
            return f"[resource link: {block.uri}" + (f" ({block.name})]" if block.name else "]")
        case types.EmbeddedResource():
            resource = block.resource
            if isinstance(resource, types.TextResourceContents):
                return f"[resource {resource.uri}]\n{resource.text}"
            return (
                f"[binary resource omitted: {resource.uri}, {resource.mime_type or 'unknown type'}]"
            )
    return f"[unsupported content omitted: {getattr(block, 'type', 'unknown')}]"


def _for_model(block: types.ContentBlock) -> bool:
    annotations = getattr(block, "annotations", None)
    audience = getattr(annotations, "audience", None)
    return not audience or "assistant" in audience


def result_text(result: types.CallToolResult, *, prefer_structured: bool = False) -> str:
    """The whole result as the model reads it (before truncation)."""
    blocks = [b for b in result.content if _for_model(b)]
    has_text = any(isinstance(b, types.TextContent) for b in blocks)
    if result.structured_content is None or (has_text and not prefer_structured):
        return "\n".join(_describe(block) for block in blocks)
    parts = [json.dumps(result.structured_content, ensure_ascii=False)]
    parts += [_describe(b) for b in blocks if not isinstance(b, types.TextContent)]
    return "\n".join(parts)


def truncate(text: str, max_chars: int) -> str:
    """Cap ``text`` at ``max_chars``, saying how much was cut."""
    if len(text) <= max_chars:
        return text
    marker = TRUNCATION_MARKER.format(total=len(text), kept=max_chars)
    return text[: max(0, max_chars - len(marker))] + marker


def bounded_blocks(blocks: list[dict[str, Any]], max_chars: int) -> tuple[dict[str, Any], ...]:
    """A failed call's error content (``mcp_call.error.content``), kept within ``max_chars``
    like an output: text blocks cut to what is left (saying so), other blocks kept only while
    their JSON fits, the rest replaced by one text block saying how many were dropped."""
    kept: list[dict[str, Any]] = []
    left, dropped = max_chars, 0
    for block in blocks:
        if block.get("type") == "text" and isinstance(block.get("text"), str) and left > 0:
            text = truncate(block["text"], left)
            kept.append({**block, "text": text})
            left -= len(text)
            continue
        size = len(json.dumps(block))
        if size <= left:
            kept.append(block)
            left -= size
        else:
            dropped += 1
    if dropped:
        kept.append({"type": "text", "text": f"[toolbridge: {dropped} more blocks dropped]"})
    return tuple(kept)
