"""Tool results as text for the model: nothing silently dropped."""

from __future__ import annotations

import mcp_types as types

from app.mcp.results import result_text, truncate


def test_text_parts_are_joined() -> None:
    result = types.CallToolResult(
        content=[types.TextContent(type="text", text="a"), types.TextContent(type="text", text="b")]
    )
    assert result_text(result) == "a\nb"


def test_text_is_what_the_model_reads_structured_content_is_for_programs() -> None:
    # What the mcp SDK and FastMCP send for a tool returning 5.
    result = types.CallToolResult(
        content=[types.TextContent(type="text", text="5")], structured_content={"result": 5}
    )
    assert result_text(result) == "5"
    assert result_text(result, prefer_structured=True) == '{"result": 5}'


def test_structured_content_is_used_when_there_is_no_text() -> None:
    image = types.ImageContent(type="image", data="aGVsbG8h", mime_type="image/png")
    result = types.CallToolResult(content=[image], structured_content={"n": 1})
    assert result_text(result) == '{"n": 1}\n[image omitted: image/png, 6 bytes]'


def test_content_for_the_user_only_is_not_sent_to_the_model() -> None:
    result = types.CallToolResult(
        content=[
            types.TextContent(
                type="text", text="for you", annotations=types.Annotations(audience=["user"])
            ),
            types.TextContent(
                type="text",
                text="for both",
                annotations=types.Annotations(audience=["user", "assistant"]),
            ),
            types.TextContent(type="text", text="for anyone"),
        ]
    )
    assert result_text(result) == "for both\nfor anyone"


def test_media_and_resources_are_summarised() -> None:
    result = types.CallToolResult(
        content=[
            types.ImageContent(type="image", data="aGVsbG8h", mime_type="image/png"),
            types.AudioContent(type="audio", data="aGVsbG8h", mime_type="audio/wav"),
            types.ResourceLink(type="resource_link", uri="file:///r.txt", name="r"),
            types.EmbeddedResource(
                type="resource",
                resource=types.TextResourceContents(uri="file:///t.txt", text="inside"),
            ),
            types.EmbeddedResource(
                type="resource",
                resource=types.BlobResourceContents(
                    uri="file:///b.bin", blob="AAAA", mime_type="application/octet-stream"
                ),
            ),
        ]
    )
    assert result_text(result).split("\n") == [
        "[image omitted: image/png, 6 bytes]",
        "[audio omitted: audio/wav, 6 bytes]",
        "[resource link: file:///r.txt (r)]",
        "[resource file:///t.txt]",
        "inside",
        "[binary resource omitted: file:///b.bin, application/octet-stream]",
    ]


def test_truncate_keeps_short_text_and_marks_cuts() -> None:
    assert truncate("short", 300) == "short"
    cut = truncate("y" * 1000, 300)
    assert len(cut) == 300
    assert cut.endswith("[toolbridge: output truncated from 1000 to 300 characters]")
