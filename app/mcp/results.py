"""Turn an MCP ``CallToolResult`` into the text a chat model reads.

Chat models take tool results as text, so: text parts are joined; ``structuredContent`` is
sent as JSON; images, audio and resources are summarised so the model knows something was
there and what was left out.
"""

from __future__ import annotations

import json

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


def result_text(result: types.CallToolResult) -> str:
    """The whole result as text (before truncation).

    When ``structuredContent`` is present it is the result (the spec's text block then only
    repeats it as serialized JSON), so it is sent as JSON, followed by any non-text blocks.
    """
    if result.structured_content is None:
        return "\n".join(_describe(block) for block in result.content)
    parts = [json.dumps(result.structured_content, ensure_ascii=False)]
    parts += [_describe(b) for b in result.content if not isinstance(b, types.TextContent)]
    return "\n".join(parts)


def truncate(text: str, max_chars: int) -> str:
    """Cap ``text`` at ``max_chars``, saying how much was cut."""
    if len(text) <= max_chars:
        return text
    marker = TRUNCATION_MARKER.format(total=len(text), kept=max_chars)
    return text[: max(0, max_chars - len(marker))] + marker
