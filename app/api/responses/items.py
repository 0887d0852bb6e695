"""Responses API items to the conversation the engine runs (Chat Completions messages).

A Responses conversation is a list of items: messages, function calls and their outputs, and
the MCP items (``mcp_list_tools``, ``mcp_call``, ``mcp_approval_request``,
``mcp_approval_response``). The model reads chat messages, so items are folded into them here:
consecutive call items form one assistant message whose results follow it; a listed server's
tools are remembered for reuse; approval answers become decisions for the engine.

Item ids carry the model's call id (``ids.call_id_of``), so the same call keeps the same ids
across responses.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

import mcp_types as types
from pydantic import ValidationError

from app.api.responses.ids import call_id_of
from app.engine.events import ToolCall
from app.engine.loop import TOOL_ERROR_PREFIX, denied_result
from app.engine.request import ApprovalDecision
from app.engine.search import FUNCTION_NAME as SEARCH_FUNCTION
from app.errors import InvalidRequest
from app.llm.client import Message
from app.mcp.naming import exposed_name
from app.mcp.results import truncate

CALL_ITEMS = ("function_call", "mcp_call", "mcp_approval_request", "tool_search_call")
NOT_RUN = "This call did not run: a limit ended the response first."


@dataclass
class Conversation:
    """What the items say, in the engine's terms."""

    messages: list[Message] = field(default_factory=list)
    known_tools: dict[str, tuple[types.Tool, ...]] = field(default_factory=dict)
    """Tool lists already in the conversation, by server label."""
    pending: dict[str, dict[str, Any]] = field(default_factory=dict)
    """Approval requests (by id) not yet answered: the tool call each stands for."""
    approvals: list[ApprovalDecision] = field(default_factory=list)
    approvals_at: int | None = None
    answered_before: dict[str, dict[str, Any]] = field(default_factory=dict)
    """Approval responses of earlier requests, by approval request id."""
    answered_now: set[str] = field(default_factory=set)
    """Approval request ids this request answers."""
    max_output_chars: int = 20_000
    """An ``mcp_call``'s output or error, replayed to the model, is cut as a live one is."""
    _group: Message | None = None
    _results: list[Message] = field(default_factory=list)
    _call_ids: set[str] = field(default_factory=set)
    _unanswered: dict[str, str] = field(default_factory=dict)
    """The caller's function calls without an output yet: call id -> the item's ``param``."""

    def _call(self, call: dict[str, Any]) -> None:
        """Add a tool call to the assistant message of the current group."""
        if self._group is None:
            last = self.messages[-1] if self.messages else None
            if last is not None and last["role"] == "assistant" and not last.get("tool_calls"):
                self._group = last  # the model's text of the same turn
            else:
                self._group = {"role": "assistant", "content": None}
                self.messages.append(self._group)
            self._group["tool_calls"] = []
        self._group["tool_calls"].append(call)
        self._call_ids.add(call["id"])

    def _flush(self) -> None:
        """End the current call group: its known results follow its assistant message."""
        if self._group is None:
            return
        self.messages.extend(self._results)
        if any(c["id"] in self._pending_call_ids() for c in self._group["tool_calls"]):
            self.approvals_at = len(self.messages)
        self._group, self._results = None, []

    def _pending_call_ids(self) -> set[str]:
        return {c["id"] for c in self.pending.values()}

    def add(self, item: dict[str, Any], param: str, *, is_new: bool) -> None:
        kind = item.get("type", "message")
        if kind not in CALL_ITEMS:
            self._flush()
        match kind:
            case "message":
                self.messages.append(_message(item, param))
            case "function_call" | "tool_search_call":
                self._client_or_search_call(item, param)
            case "function_call_output" | "tool_search_output":
                self._output(item, param)
            case "mcp_call":
                self._mcp_call(item, param)
            case "mcp_approval_request":
                self._approval_request(item, param)
            case "mcp_approval_response":
                if is_new:
                    self._answer(item, param)
            case "mcp_list_tools":
                self.known_tools[_str(item, "server_label", param)] = _tools(item, param)
            case "reasoning":
                pass  # our models' reasoning is not replayed
            case _:
                raise InvalidRequest(f"Unsupported input item type '{kind}'.", param=param)

    def _client_or_search_call(self, item: dict[str, Any], param: str) -> None:
        call = _client_or_search_call(item, param)
        self._call(call)
        if item.get("type") == "function_call":
            self._unanswered[call["id"]] = param

    def _output(self, item: dict[str, Any], param: str) -> None:
        output = _output_message(item, param)
        call_id = output["tool_call_id"]
        if item.get("type") == "function_call_output" and call_id not in self._call_ids:
            # As OpenAI refuses it: a provider would, once the run had begun.
            raise InvalidRequest(
                f"No tool call found for function call output with call_id {call_id}.",
                param=param,
            )
        self._unanswered.pop(call_id, None)
        self.messages.append(output)

    def _mcp_tool_call(self, item: dict[str, Any], param: str) -> dict[str, Any]:
        name = exposed_name(_str(item, "server_label", param), _str(item, "name", param), set())
        return _tool_call(call_id_of(_str(item, "id", param)), name, _str(item, "arguments", param))

    def _approval_request(self, item: dict[str, Any], param: str) -> None:
        request_id = _str(item, "id", param)
        call = self._mcp_tool_call(item, param)
        earlier = self.answered_before.get(request_id)
        if earlier is not None and earlier.get("approve"):
            return  # it ran: the later mcp_call item carries the call and its result
        self._call(call)
        if request_id in self.answered_now:
            self.pending[request_id] = call  # the engine runs it, or reports the denial
            return
        why = earlier.get("reason") if earlier else "no approval response was given"
        self._results.append(
            {"role": "tool", "tool_call_id": call["id"], "content": denied_result(why)}
        )

    def _mcp_call(self, item: dict[str, Any], param: str) -> None:
        if item.get("status") == "incomplete":
            if item.get("approval_request_id"):
                return  # denied: its request and the answer already stand for it
            call = self._mcp_tool_call(item, param)
            self._call(call)
            self._results.append({"role": "tool", "tool_call_id": call["id"], "content": NOT_RUN})
            return
        call = self._mcp_tool_call(item, param)
        self._call(call)
        error = item.get("error")
        text = truncate(
            f"{TOOL_ERROR_PREFIX}{_error_text(error)}" if error else str(item.get("output") or ""),
            self.max_output_chars,
        )
        self._results.append({"role": "tool", "tool_call_id": call["id"], "content": text})

    def _answer(self, item: dict[str, Any], param: str) -> None:
        request_id = _str(item, "approval_request_id", param)
        call = self.pending.pop(request_id, None)
        if call is None:
            raise InvalidRequest(
                f"No pending approval request '{request_id}' in this conversation.",
                param=f"{param}.approval_request_id",
            )
        function = call["function"]
        self.approvals.append(
            ApprovalDecision(
                call=ToolCall(call["id"], function["name"], function["arguments"]),
                approve=bool(item.get("approve")),
                reason=item.get("reason"),
            )
        )

    def finish(self, *, answered: bool) -> None:
        self._flush()
        if answered and self._unanswered:
            call_id, param = next(iter(self._unanswered.items()))
            raise InvalidRequest(f"No tool output found for function call {call_id}.", param=param)


def _str(item: dict[str, Any], key: str, param: str) -> str:
    value = item.get(key)
    if not isinstance(value, str):
        raise InvalidRequest(f"'{key}' must be a string.", param=f"{param}.{key}")
    return value


def _tool_call(call_id: str, name: str, arguments: str) -> dict[str, Any]:
    return {"id": call_id, "type": "function", "function": {"name": name, "arguments": arguments}}


def _parts_text(parts: Any, param: str) -> str:
    if not isinstance(parts, list):
        raise InvalidRequest("Expected a string or a list of content parts.", param=param)
    return "".join(str(p.get("text", "")) for p in parts if isinstance(p, dict))


_TEXT_FIELDS = {"input_text": "text", "output_text": "text", "text": "text", "refusal": "refusal"}
"""Text content parts, and the field that holds their text."""


def _text_field(part: Any) -> str | None:
    """The field holding a text content part's text; None for any other part."""
    kind = part.get("type") if isinstance(part, dict) else None
    return _TEXT_FIELDS.get(kind) if isinstance(kind, str) else None


def _content_part(part: Any, param: str) -> dict[str, Any]:
    if (field := _text_field(part)) is not None:
        return {"type": "text", "text": str(part.get(field, ""))}
    kind = part.get("type") if isinstance(part, dict) else None
    if kind == "input_image":
        url = part.get("image_url")
        if not isinstance(url, str):
            raise InvalidRequest(
                "input_image needs image_url (file_id is not supported).", param=param
            )
        return {
            "type": "image_url",
            "image_url": {"url": url, "detail": part.get("detail") or "auto"},
        }
    raise InvalidRequest(f"Unsupported content part type '{kind}'.", param=param)


def _texts(content: list[Any]) -> list[str] | None:
    """The texts of content that is all text parts (as ``_content_part`` reads them); None for
    any other. A long conversation is mostly such messages: read without a part each."""
    texts = []
    for part in content:
        if (field := _text_field(part)) is None:
            return None
        texts.append(str(part.get(field, "")))
    return texts


def _message(item: dict[str, Any], param: str) -> Message:
    role = item.get("role")
    if role not in ("user", "assistant", "system", "developer"):
        raise InvalidRequest(
            "role must be user, assistant, system or developer.", param=f"{param}.role"
        )
    content = item.get("content")
    if isinstance(content, str):
        return {"role": role, "content": content}
    if not isinstance(content, list):
        raise InvalidRequest("content must be a string or a list.", param=f"{param}.content")
    if (texts := _texts(content)) is not None:
        return {"role": role, "content": "".join(texts)}
    parts = [_content_part(p, f"{param}.content[{i}]") for i, p in enumerate(content)]
    if role != "user" or all(p["type"] == "text" for p in parts):
        return {"role": role, "content": "".join(p.get("text", "") for p in parts)}
    return {"role": role, "content": parts}


def _tools(item: dict[str, Any], param: str) -> tuple[types.Tool, ...]:
    try:
        return tuple(
            types.Tool(
                name=t["name"],
                description=t.get("description"),
                input_schema=t.get("input_schema") or {"type": "object"},
                annotations=t.get("annotations"),
            )
            for t in item.get("tools") or []
        )
    except (KeyError, TypeError, ValidationError):
        raise InvalidRequest("Invalid mcp_list_tools item.", param=param) from None


def _client_or_search_call(item: dict[str, Any], param: str) -> dict[str, Any]:
    """A ``function_call`` (the caller's tool) or ``tool_search_call`` (our search) item as the
    model's tool call."""
    call_id = item.get("call_id") or call_id_of(str(item.get("id")))
    if item.get("type") == "function_call":
        return _tool_call(call_id, _str(item, "name", param), _str(item, "arguments", param))
    arguments = item.get("arguments")
    return _tool_call(
        call_id, SEARCH_FUNCTION, json.dumps(arguments if isinstance(arguments, dict) else {})
    )


def _output_message(item: dict[str, Any], param: str) -> Message:
    """A ``function_call_output`` or ``tool_search_output`` item as the tool message."""
    if item.get("type") == "tool_search_output":
        call_id = item.get("call_id") or call_id_of(str(item.get("id")))
        return {"role": "tool", "content": _loaded_text(item), "tool_call_id": call_id}
    output = item.get("output")
    text = output if isinstance(output, str) else _parts_text(output, param)
    return {"role": "tool", "content": text, "tool_call_id": _str(item, "call_id", param)}


def _loaded_text(item: dict[str, Any]) -> str:
    """What the model read after a search (the tools are loaded again by replaying it)."""
    names = [
        f"{namespace.get('name')}/{tool.get('name')}"
        for namespace in item.get("tools") or []
        if isinstance(namespace, dict)
        for tool in namespace.get("tools") or []
        if isinstance(tool, dict)
    ]
    return "Loaded these tools: " + ", ".join(names) if names else "Nothing was loaded."


def _error_text(error: Any) -> str:
    """What the model read for a failed call: an ``mcp_call.error`` as openai-python 3.x types
    it (a message, or a tool's error content), or the plain string older items carry."""
    if not isinstance(error, dict):
        return str(error)
    if isinstance(error.get("message"), str):
        return str(error["message"])
    blocks = error.get("content")
    if not isinstance(blocks, list):
        return ""
    return "\n".join(str(b.get("text", "")) for b in blocks if isinstance(b, dict))


def _approval_answers(items: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {
        str(i.get("approval_request_id")): i
        for i in items
        if isinstance(i, dict) and i.get("type") == "mcp_approval_response"
    }


def fold(
    history: list[dict[str, Any]],
    new: list[dict[str, Any]],
    *,
    instructions: str | None,
    max_output_chars: int = 20_000,
    named: tuple[str, str] = ("previous_response.items", "input"),
    answered: bool = True,
) -> Conversation:
    """Fold an earlier conversation and this request's input items for the engine.

    ``instructions`` become the first system message (they are not carried over from earlier
    responses, as at OpenAI). ``named``: what an error calls the earlier items and the new ones
    (``param``, with the item's index). ``answered``: every function call must have its
    output, as OpenAI requires of a response's input (not of a conversation's items, which may
    take a call before its output).
    """
    conversation = Conversation(
        answered_before=_approval_answers(history),
        answered_now=set(_approval_answers(new)),
        max_output_chars=max_output_chars,
    )
    if instructions:
        conversation.messages.append({"role": "system", "content": instructions})
    for is_new, items in ((False, history), (True, new)):
        for index, item in enumerate(items):
            param = f"{named[is_new]}[{index}]"
            if not isinstance(item, dict):
                raise InvalidRequest("Each input item must be an object.", param=param)
            conversation.add(item, param, is_new=is_new)
    conversation.finish(answered=answered)
    return conversation
