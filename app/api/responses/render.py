"""Run events as OpenAI's Response object and its streaming events.

One renderer serves both modes: every run event updates the Response; when streaming, it also
makes the stream events (as SSE text). This class owns the numbering (``sequence_number``,
``output_index``), so the two modes agree by construction.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any, assert_never

from app.api.errors import error_response_body
from app.api.responses import ids
from app.api.sse import progress_text, sse_comment, sse_event
from app.engine.events import (
    ApprovalRequired,
    ClientToolCallDelta,
    McpCallFinished,
    McpCallProgress,
    McpCallSkipped,
    McpCallStarted,
    RunEvent,
    RunFinished,
    TextDelta,
    TokenTotals,
    ToolSearched,
    ToolsListed,
    TurnStarted,
    TurnUsage,
)
from app.errors import ServerUnreachable, ToolbridgeError
from app.mcp.features.notes import wire

StreamEvent = dict[str, Any]

_INCOMPLETE = {
    "length": "max_output_tokens",
    "content_filter": "content_filter",
    "max_turns": "max_turns",
    "max_tool_calls": "max_tool_calls",
    "budget_exceeded": "budget_exceeded",
}


def _listed_item(event: ToolsListed) -> dict[str, Any]:
    item = list_tools_item(event.server_label, [_tool_entry(t) for t in event.tools])
    if event.note is not None:  # toolbridge's extension, as on mcp_call
        item["notes"] = [{"kind": "tools_deferred", "message": event.note}]
    return item


def list_tools_item(
    label: str, tools: list[dict[str, Any]], error: str | None = None
) -> dict[str, Any]:
    """An ``mcp_list_tools`` output item (``error`` set when listing failed)."""
    return {
        "id": ids.list_tools_id(),
        "type": "mcp_list_tools",
        "server_label": label,
        "tools": tools,
        "error": error,
    }


@dataclass
class ResponseRenderer:
    """Builds one Response from a run's events."""

    fields: dict[str, Any]
    """The request-derived fields echoed on the Response (model, tools, instructions, ...)."""
    stream: bool = False
    """Whether to make stream events (a request that does not stream needs only ``body``)."""
    id: str = field(default_factory=ids.response_id)
    created_at: int = field(default_factory=lambda: int(time.time()))
    output: list[dict[str, Any]] = field(default_factory=list)
    status: str = "in_progress"
    incomplete_details: dict[str, Any] | None = None
    error: dict[str, Any] | None = None
    finished: RunFinished | None = None
    _seq: int = 0
    _message: int | None = None
    _message_text: list[str] = field(default_factory=list)
    """The open message's text so far, joined into its part when read (``_sync_text``): added
    to a string a token at a time, a long answer took time quadratic in its length."""
    _client_calls: dict[int, int] = field(default_factory=dict)
    _mcp_calls: dict[str, int] = field(default_factory=dict)

    def _sync_text(self) -> None:
        if self._message is not None:
            self.output[self._message]["content"][0]["text"] = "".join(self._message_text)

    def response(self) -> dict[str, Any]:
        self._sync_text()
        tokens = self.finished.usage if self.finished else TokenTotals()
        sampling = self.finished.sampling if self.finished else None
        return {
            "id": self.id,
            "object": "response",
            "created_at": self.created_at,
            "status": self.status,
            "error": self.error,
            "incomplete_details": self.incomplete_details,
            "output": self.output,
            "usage": {
                "input_tokens": tokens.prompt_tokens,
                "input_tokens_details": {
                    "cached_tokens": tokens.cached_tokens,
                    "cache_write_tokens": 0,
                },
                "output_tokens": tokens.completion_tokens,
                "output_tokens_details": {"reasoning_tokens": tokens.reasoning_tokens},
                "total_tokens": tokens.prompt_tokens + tokens.completion_tokens,
                "sampling": sampling.as_usage() if sampling else None,
            },
            **self.fields,
        }

    def _event(self, type_: str, **payload: Any) -> StreamEvent:
        event = {"type": type_, "sequence_number": self._seq, **payload}
        self._seq += 1
        return event

    def start(self) -> list[StreamEvent]:
        snapshot = self.response()
        return [
            self._event("response.created", response=snapshot),
            self._event("response.in_progress", response=snapshot),
        ]

    def _add(self, item: dict[str, Any]) -> tuple[int, StreamEvent]:
        self.output.append(item)
        index = len(self.output) - 1
        return index, self._event("response.output_item.added", output_index=index, item=dict(item))

    def _done(self, index: int) -> StreamEvent:
        return self._event("response.output_item.done", output_index=index, item=self.output[index])

    def body(self) -> dict[str, Any]:
        return self.response()

    def opening(self) -> list[str]:
        return [_sse(event) for event in self.start()]

    def progress(self, update: McpCallProgress) -> list[str]:
        """A server's progress while the stream is open: no stream event carries it, a comment
        line does."""
        return [sse_comment(progress_text(update))] if self.stream else []

    def absorb(self, event: RunEvent) -> list[str]:
        """Take in a run event; the stream events it makes, when streaming."""
        events = self.events_for(event)
        return [_sse(e) for e in events] if self.stream else []

    def closing(self) -> list[str]:
        return [_sse(event) for event in self.final_events()]

    def failed(self, exc: Exception) -> str:
        """The run failed after the stream started: ``failure_events``, as SSE."""
        return "".join(_sse(event) for event in self.failure_events(exc))

    def failure_events(self, exc: Exception) -> list[StreamEvent]:
        """The run failed: ``response.failed`` (after a failed ``mcp_list_tools`` item when a
        server could not be listed)."""
        if isinstance(exc, ServerUnreachable):
            listed = list_tools_item(exc.server_label, [], error=exc.reason)
            return self.list_tools(listed) + self.fail(exc.message)
        if isinstance(exc, ToolbridgeError):
            return self.fail(exc.message)
        _, error = error_response_body(exc)  # logs what we did not expect
        return self.fail(error["error"]["message"])

    def events_for(self, event: RunEvent) -> list[StreamEvent]:
        """The stream events a run event makes."""
        match event:
            case TextDelta(text=text):
                return self._text(text)
            case TurnStarted():
                return self._close_message()
            case ToolsListed():
                return self.list_tools(_listed_item(event))
            case ClientToolCallDelta():
                return self._client_call(event)
            case McpCallStarted():
                return self._mcp_started(event)
            case McpCallFinished():
                return self._mcp_finished(event)
            case McpCallSkipped():
                return self._mcp_skipped(event)
            case ToolSearched():
                return self._tool_searched(event)
            case ApprovalRequired():
                item = {
                    "id": ids.approval_request_id(event.call_id),
                    "type": "mcp_approval_request",
                    "server_label": event.server_label,
                    "name": event.tool,
                    "arguments": event.arguments,
                }
                events = self._close_message()
                index, added = self._add(item)
                return [*events, added, self._done(index)]
            case TurnUsage():
                return []
            case RunFinished():
                return self._finish(event)
            case _:
                assert_never(event)

    def _text(self, text: str) -> list[StreamEvent]:
        events = []
        if self._message is None:
            item: dict[str, Any] = {
                "id": ids.message_id(),
                "type": "message",
                "role": "assistant",
                "status": "in_progress",
                "content": [],
            }
            self._message, added = self._add(item)
            part = {"type": "output_text", "text": "", "annotations": [], "logprobs": []}
            item["content"].append(part)
            events += [
                added,
                self._event(
                    "response.content_part.added",
                    item_id=item["id"],
                    output_index=self._message,
                    content_index=0,
                    part=dict(part),
                ),
            ]
        message = self.output[self._message]
        self._message_text.append(text)
        events.append(
            self._event(
                "response.output_text.delta",
                item_id=message["id"],
                output_index=self._message,
                content_index=0,
                delta=text,
                logprobs=[],
            )
        )
        return events

    def _close_message(self) -> list[StreamEvent]:
        if self._message is None:
            return []
        self._sync_text()
        self._message_text.clear()
        index, self._message = self._message, None
        item = self.output[index]
        part = item["content"][0]
        item["status"] = "completed"
        where = {"item_id": item["id"], "output_index": index, "content_index": 0}
        return [
            self._event("response.output_text.done", **where, text=part["text"], logprobs=[]),
            self._event("response.content_part.done", **where, part=part),
            self._done(index),
        ]

    def list_tools(self, item: dict[str, Any]) -> list[StreamEvent]:
        index, added = self._add(item)
        where = {"item_id": item["id"], "output_index": index}
        state = "failed" if item["error"] else "completed"
        return [
            added,
            self._event("response.mcp_list_tools.in_progress", **where),
            self._event(f"response.mcp_list_tools.{state}", **where),
            self._done(index),
        ]

    def _client_call(self, event: ClientToolCallDelta) -> list[StreamEvent]:
        events = []
        if event.index not in self._client_calls:
            events += self._close_message()
            item: dict[str, Any] = {
                "id": ids.function_call_id(event.call_id or ""),
                "type": "function_call",
                "call_id": event.call_id,
                "name": event.name,
                "arguments": "",
                "status": "in_progress",
            }
            self._client_calls[event.index], added = self._add(item)
            events.append(added)
        index = self._client_calls[event.index]
        item = self.output[index]
        item["arguments"] += event.arguments
        if event.arguments:
            events.append(
                self._event(
                    "response.function_call_arguments.delta",
                    item_id=item["id"],
                    output_index=index,
                    delta=event.arguments,
                )
            )
        return events

    def _mcp_started(self, event: McpCallStarted) -> list[StreamEvent]:
        item = _mcp_call_item(event, "in_progress", approved=event.approved)
        events = self._close_message()
        index, added = self._add(item)
        self._mcp_calls[event.call_id] = index
        where = {"item_id": item["id"], "output_index": index}
        return [
            *events,
            added,
            self._event("response.mcp_call.in_progress", **where),
            self._event("response.mcp_call_arguments.delta", **where, delta=event.arguments),
            self._event("response.mcp_call_arguments.done", **where, arguments=event.arguments),
        ]

    def _mcp_finished(self, event: McpCallFinished) -> list[StreamEvent]:
        index = self._mcp_calls[event.call_id]
        item = self.output[index]
        item.update(
            output=None if event.error else event.output,
            error=event.error.wire() if event.error else None,
            status="failed" if event.error else "completed",
        )
        # toolbridge's extension: what the server did through us meanwhile
        item["notes"] = [wire(note) for note in event.notes]
        state = "failed" if event.error else "completed"
        return [
            self._event(f"response.mcp_call.{state}", item_id=item["id"], output_index=index),
            self._done(index),
        ]

    def _mcp_skipped(self, event: McpCallSkipped) -> list[StreamEvent]:
        """A call that did not run: an ``mcp_call`` item, ``incomplete``."""
        item = _mcp_call_item(event, "incomplete", approved=event.denied)
        events = self._close_message()
        index, added = self._add(item)
        return [*events, added, self._done(index)]

    def _tool_searched(self, event: ToolSearched) -> list[StreamEvent]:
        """A server-executed search: a ``tool_search_call`` item and its ``tool_search_output``
        (the loaded tools, one namespace per server)."""
        namespaces: dict[str, dict[str, Any]] = {}
        for loaded in event.loaded:
            namespace = namespaces.setdefault(
                loaded.server_label,
                {
                    "type": "namespace",
                    "name": loaded.server_label,
                    "description": loaded.server_description or "",
                    "tools": [],
                },
            )
            function: dict[str, Any] = {"type": "function", "name": loaded.tool.name}
            if loaded.tool.description:
                function["description"] = loaded.tool.description
            function["parameters"] = loaded.tool.input_schema
            namespace["tools"].append(function)
        call = {
            "id": ids.tool_search_call_id(event.call_id),
            "type": "tool_search_call",
            "call_id": event.call_id,
            "arguments": event.arguments,
            "execution": "server",
            "status": "completed",
        }
        output = {
            "id": ids.tool_search_output_id(event.call_id),
            "type": "tool_search_output",
            "call_id": event.call_id,
            "execution": "server",
            "status": "completed",
            "tools": list(namespaces.values()),
        }
        events = self._close_message()
        for item in (call, output):
            index, added = self._add(item)
            events += [added, self._done(index)]
        return events

    def _finish(self, event: RunFinished) -> list[StreamEvent]:
        events = self._close_message()
        for index in self._client_calls.values():
            item = self.output[index]
            item["status"] = "completed"
            events += [
                self._event(
                    "response.function_call_arguments.done",
                    item_id=item["id"],
                    output_index=index,
                    arguments=item["arguments"],
                    name=item["name"],
                ),
                self._done(index),
            ]
        self.finished = event
        reason = _INCOMPLETE.get(event.reason)
        if reason is None:
            self.status = "completed"
        else:
            self.status = "incomplete"
            self.incomplete_details = {"reason": reason}
        return events

    def final_events(self) -> list[StreamEvent]:
        """The closing event, with the full Response (after it has been stored)."""
        kind = {"completed": "response.completed", "incomplete": "response.incomplete"}.get(
            self.status, "response.failed"
        )
        return [self._event(kind, response=self.response())]

    def fail(self, message: str) -> list[StreamEvent]:
        """The run failed after the stream started (``server_error``: the one code OpenAI's
        Response error allows for failures like ours)."""
        self.status, self.error = "failed", {"code": "server_error", "message": message}
        return self._close_message() + self.final_events()


def _mcp_call_item(
    event: McpCallStarted | McpCallSkipped, status: str, *, approved: bool
) -> dict[str, Any]:
    """An ``mcp_call`` item before its result; ``approved``: it answers an approval request."""
    return {
        "id": ids.mcp_call_id(event.call_id),
        "type": "mcp_call",
        "server_label": event.server_label,
        "name": event.tool,
        "arguments": event.arguments,
        "output": None,
        "error": None,
        "status": status,
        "approval_request_id": ids.approval_request_id(event.call_id) if approved else None,
        "notes": [],
    }


def _sse(event: StreamEvent) -> str:
    return sse_event(event, name=event["type"])


def _tool_entry(tool: Any) -> dict[str, Any]:
    annotations = (
        tool.annotations.model_dump(by_alias=True, exclude_none=True) if tool.annotations else None
    )
    return {
        "name": tool.name,
        "description": tool.description,
        "input_schema": tool.input_schema,
        "annotations": annotations,
    }
