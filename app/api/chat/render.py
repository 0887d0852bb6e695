"""Run events as OpenAI's ``chat.completion`` object, or as its chunks when streaming.

toolbridge adds one field, ``toolbridge``: the MCP calls that ran (with their ``notes``) and why
a limit ended the run (``incomplete_details``)."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any, assert_never

import orjson

from app.api.errors import error_response_body
from app.api.sse import DONE, progress_text, sse_comment, sse_event
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
    ToolSearched,
    ToolsListed,
    TurnStarted,
    TurnUsage,
)
from app.ids import run_scoped_id
from app.mcp.features.notes import wire

_LIMIT_REASONS = ("max_turns", "max_tool_calls", "budget_exceeded")
_MARK = {"toolbridge-delta-mark": 0}
"""Stands for the delta in a chunk rendered once, to find the bytes around it."""


@dataclass
class ChatRenderer:
    """Collects a run's events into a ``chat.completion``, or renders them as chunks."""

    model: str
    stream: bool = False
    """Whether ``absorb`` makes chunks (a request that does not stream needs only ``body``)."""
    include_usage: bool = False
    id: str = field(default_factory=lambda: f"chatcmpl-{run_scoped_id()}")
    created: int = field(default_factory=lambda: int(time.time()))
    text: list[str] = field(default_factory=list)
    mcp_calls: list[dict[str, Any]] = field(default_factory=list)
    tool_searches: list[dict[str, Any]] = field(default_factory=list)
    deferred_servers: list[dict[str, Any]] = field(default_factory=list)
    finished: RunFinished | None = None
    new_turn: bool = False
    started: bool = False
    _delta_frame: tuple[bytes, bytes] | None = field(default=None, init=False, repr=False)
    """The bytes around a delta in its chunk (``delta_chunk``), made at the first one."""

    def opening(self) -> list[str]:
        return []  # the role chunk waits for the run's first event: until then, errors are JSON

    def progress(self, update: McpCallProgress) -> list[str]:
        """A server's progress while the stream is open: no chunk carries it, a comment does."""
        return [sse_comment(progress_text(update))] if self.stream and self.started else []

    def absorb(self, event: RunEvent) -> list[str]:
        """Take in an event; the chunks it makes when streaming."""
        deltas = self._deltas(event)
        if not self.stream or (not deltas and isinstance(event, (TurnStarted, ToolsListed))):
            return []  # before the first model call has a result, an error is still JSON (429)
        chunks = [self.delta_chunk(delta) for delta in deltas]
        if not self.started:
            self.started = True
            chunks.insert(0, self.chunk({"role": "assistant", "content": ""}))
        return chunks

    def _deltas(self, event: RunEvent) -> list[dict[str, Any]]:
        match event:
            case TurnStarted():
                self.new_turn = True
            case TextDelta(text=text):
                if self.new_turn and self.text:
                    text = "\n\n" + text  # keep the texts of different turns apart
                self.new_turn = False
                self.text.append(text)
                return [{"content": text}]
            case ClientToolCallDelta():
                return [{"tool_calls": [_call_delta(event)]}]
            case McpCallFinished():
                self.mcp_calls.append(
                    {
                        "id": event.call_id,
                        "server_label": event.server_label,
                        "name": event.tool,
                        "arguments": event.arguments,
                        "output": None if event.error else event.output,
                        "error": event.error.wire() if event.error else None,
                        "status": "failed" if event.error else "completed",
                        "duration_ms": round(event.duration_s * 1000, 1),
                        "notes": [wire(note) for note in event.notes],
                    }
                )
            case McpCallSkipped():
                self.mcp_calls.append(
                    {
                        "id": event.call_id,
                        "server_label": event.server_label,
                        "name": event.tool,
                        "arguments": event.arguments,
                        "output": None,
                        "error": None,
                        "status": "incomplete",
                        "duration_ms": 0.0,
                        "notes": [],
                    }
                )
            case ToolSearched():
                self.tool_searches.append(
                    {
                        "id": event.call_id,
                        "arguments": event.arguments,
                        "loaded": [
                            {"server_label": t.server_label, "name": t.tool.name, "tool": t.name}
                            for t in event.loaded
                        ],
                    }
                )
            case ToolsListed(note=str(note)):
                self.deferred_servers.append(
                    {"server_label": event.server_label, "tools": len(event.tools), "note": note}
                )
            case RunFinished(reason="budget_exceeded") if not self.text:
                self.finished = event
                note = _budget_note(self.mcp_calls)  # never an empty answer (issue: budgets)
                self.text.append(note)
                return [{"content": note}]
            case RunFinished():
                self.finished = event
            case ToolsListed() | McpCallStarted() | ApprovalRequired() | TurnUsage():
                pass
            case _:
                assert_never(event)
        return []

    def finish_reason(self) -> str:
        assert self.finished is not None
        reason = self.finished.reason
        if reason in _LIMIT_REASONS:
            return "length"
        return "stop" if reason == "approval_required" else reason

    def extension(self) -> dict[str, Any]:
        """toolbridge's field on the response: what ran, and why a limit ended the run."""
        incomplete = None
        if self.finished is not None and self.finished.reason in _LIMIT_REASONS:
            incomplete = {"reason": self.finished.reason, "message": self.finished.detail}
        return {
            "mcp_calls": self.mcp_calls,
            "tool_searches": self.tool_searches,
            "deferred_servers": self.deferred_servers,
            "incomplete_details": incomplete,
        }

    def usage_body(self) -> dict[str, Any]:
        assert self.finished is not None
        tokens, sampling = self.finished.usage, self.finished.sampling
        return {
            "sampling": sampling.as_usage() if sampling else None,
            "prompt_tokens": tokens.prompt_tokens,
            "completion_tokens": tokens.completion_tokens,
            "total_tokens": tokens.prompt_tokens + tokens.completion_tokens,
            "prompt_tokens_details": {"cached_tokens": tokens.cached_tokens},
            "completion_tokens_details": {"reasoning_tokens": tokens.reasoning_tokens},
        }

    def completion(self) -> dict[str, Any]:
        assert self.finished is not None
        message: dict[str, Any] = {
            "role": "assistant",
            "content": "".join(self.text) or None,
            "refusal": None,
        }
        if self.finished.client_tool_calls:
            message["tool_calls"] = [call.as_chat() for call in self.finished.client_tool_calls]
        return {
            "id": self.id,
            "object": "chat.completion",
            "created": self.created,
            "model": self.model,
            "system_fingerprint": None,
            "choices": [
                {
                    "index": 0,
                    "message": message,
                    "logprobs": None,
                    "finish_reason": self.finish_reason(),
                }
            ],
            "usage": self.usage_body(),
            "toolbridge": self.extension(),
        }

    def chunk(
        self, delta: dict[str, Any] | None, *, finish: str | None = None, **extra: Any
    ) -> str:
        body: dict[str, Any] = {
            "id": self.id,
            "object": "chat.completion.chunk",
            "created": self.created,
            "model": self.model,
            "system_fingerprint": None,
        }
        body["choices"] = (
            []
            if delta is None
            else [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}]
        )
        if self.include_usage:
            body["usage"] = None
        body.update(extra)
        return sse_event(body)

    def delta_chunk(self, delta: dict[str, Any]) -> str:
        """``chunk(delta)``, the same text, with only the delta encoded: the rest of a chunk is
        the same for the whole stream, and a streamed answer makes a chunk per token (rendering
        each whole was a tenth of a long answer's CPU, sampled)."""
        if self._delta_frame is None:
            before, mark, after = self.chunk(_MARK).encode().partition(orjson.dumps(_MARK))
            self._delta_frame = (before, after) if mark else (b"", b"")
        before, after = self._delta_frame
        if not after:  # the frame was not orjson's (a model name it refuses)
            return self.chunk(delta)
        try:
            encoded = orjson.dumps(delta)
        except TypeError:  # what orjson refuses: the stdlib, through the whole chunk
            return self.chunk(delta)
        return b"".join((before, encoded, after)).decode()

    def closing(self) -> list[str]:
        chunks = [self.chunk({}, finish=self.finish_reason(), toolbridge=self.extension())]
        if self.include_usage:
            chunks.append(self.chunk(None, usage=self.usage_body()))
        return [*chunks, DONE]

    def failed(self, exc: Exception) -> str:
        _, body = error_response_body(exc)
        return sse_event(body) + DONE

    def body(self) -> dict[str, Any]:
        return self.completion()


def _budget_note(mcp_calls: list[dict[str, Any]]) -> str:
    """The answer of a run the budget ended before the model answered: what happened, and which
    tool calls did run (their results are in ``toolbridge.mcp_calls``)."""
    ran = [f"{c['server_label']}.{c['name']}" for c in mcp_calls if c["status"] != "incomplete"]
    done = f"Tool calls that ran: {', '.join(ran)}." if ran else "No tool call ran."
    return f"[toolbridge] The budget ran out before the model could answer. {done}"


def _call_delta(event: ClientToolCallDelta) -> dict[str, Any]:
    if event.call_id is None:
        return {"index": event.index, "function": {"arguments": event.arguments}}
    return {
        "index": event.index,
        "id": event.call_id,
        "type": "function",
        "function": {"name": event.name, "arguments": event.arguments},
    }
