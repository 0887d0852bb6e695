"""The project's scripted model: a deterministic OpenAI-compatible chat server.

It stands in for a hosted LLM in tests, benchmarks and the offline demo, and is reached through
litellm exactly like a hosted provider. Its replies are driven by the conversation, so a test
states what the "model" does in plain words inside the user message:

- ``call NAME {json}``: on the first turn after the user message, call tool NAME with these
  arguments (several lines = parallel calls in one turn).
- ``then call NAME {json}``: call it on the turn after the first calls' results (a second step).
- ``always call NAME {json}``: call it on every turn, even after tool results (for limit tests).
- ``say TEXT``: answer TEXT.
- ``words N``: answer N words, ``w0 w1 ...`` (a long answer to a short prompt).
- ``sleep SECONDS``: wait before answering (for keep-alive and cancellation tests).
- ``fail STATUS``: answer with that HTTP error status.
- ``fail STATUS once``: only the first time this conversation is asked (a retry succeeds).
- ``fail STATUS later``: only once tool results follow (the run has started).
- ``overrun``: ignore ``max_tokens`` (a misbehaving provider, for budget tests).

Like a real provider it honours ``max_tokens`` (or ``max_completion_tokens``): a longer answer
is cut to that many words with ``finish_reason: "length"``.

Once tool results follow the last user message, the model answers ``done: `` followed by every
tool result since, as ``name=content`` joined by ``; `` (so a test sees what the model saw).
Without any instruction it echoes: ``echo(MODEL): TEXT``. Usage counts whitespace-separated
words, and bills tool schemas and tool calls as JSON (``_prompt_tokens``).
"""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route


@dataclass
class Reply:
    """What the scripted model says on one turn."""

    text: str | None = None
    tool_calls: list[tuple[str, str]] = field(default_factory=list)
    """(name, arguments JSON) pairs."""
    sleep_s: float = 0.0
    fail_status: int | None = None
    fail_once: bool = False
    fail_later: bool = False
    """Fail only once tool results follow the user message (a failure mid-run)."""
    honours_max_tokens: bool = True


def _text_of(message: dict[str, Any]) -> str:
    content = message.get("content")
    if isinstance(content, list):
        return " ".join(p.get("text", "") for p in content if isinstance(p, dict))
    return content or ""


def _parse_call(rest: str) -> tuple[str, str]:
    name, _, args = rest.strip().partition(" ")
    args = args.strip() or "{}"
    json.loads(args)  # a script with bad JSON is a test bug: fail loudly
    return name, args


@dataclass
class _Script:
    """The instructions found in a user message."""

    calls: list[tuple[str, str]] = field(default_factory=list)
    then: list[tuple[str, str]] = field(default_factory=list)
    always: list[tuple[str, str]] = field(default_factory=list)
    said: list[str] = field(default_factory=list)


def _read_script(script: str, reply: Reply) -> _Script:
    """Parse the instruction lines; settings that need no conversation go on ``reply``."""
    found = _Script()
    for line in script.splitlines():
        word, _, rest = line.strip().partition(" ")
        if word == "call":
            found.calls.append(_parse_call(rest))
        elif word == "always" and rest.startswith("call "):
            found.always.append(_parse_call(rest[5:]))
        elif word == "then" and rest.startswith("call "):
            found.then.append(_parse_call(rest[5:]))
        elif word == "say":
            found.said.append(rest)
        elif word == "words":
            found.said.append(" ".join(f"w{i}" for i in range(int(rest))))
        elif word == "sleep":
            reply.sleep_s = float(rest)
        elif word == "fail":
            status, _, when = rest.partition(" ")
            reply.fail_status, reply.fail_once = int(status), when.strip() == "once"
            reply.fail_later = when.strip() == "later"
        elif word == "overrun":
            reply.honours_max_tokens = False
    return found


def script_reply(model: str, messages: list[dict[str, Any]]) -> Reply:
    """Decide the reply for a conversation (pure; unit-testable)."""
    last_user = max((i for i, m in enumerate(messages) if m.get("role") == "user"), default=-1)
    script = _text_of(messages[last_user]) if last_user >= 0 else ""
    after = messages[last_user + 1 :]
    reply = Reply()
    found = _read_script(script, reply)
    results = [m for m in after if m.get("role") == "tool"]
    if reply.fail_later and not results:
        reply.fail_status = None
    steps = sum(1 for m in after if m.get("role") == "assistant" and m.get("tool_calls"))
    if found.always:
        reply.tool_calls = found.always
    elif found.calls and not results:
        reply.tool_calls = found.calls
    elif found.then and steps == 1:
        reply.tool_calls = found.then
    elif results:
        names = _call_names(after)
        parts = [f"{names.get(str(m.get('tool_call_id')), '?')}={_text_of(m)}" for m in results]
        reply.text = "done: " + "; ".join(parts)
    elif found.said:
        reply.text = "\n".join(found.said)
    else:
        reply.text = f"echo({model}): {script}"
    return reply


def _call_names(messages: list[dict[str, Any]]) -> dict[str, str]:
    names: dict[str, str] = {}
    for m in messages:
        for call in m.get("tool_calls") or []:
            names[call["id"]] = call["function"]["name"]
    return names


def _prompt_tokens(messages: list[dict[str, Any]], tools: list[Any]) -> int:
    """Input billed as providers bill it: the messages' words, plus the tool schemas offered
    and the tool calls in the history, as JSON at four characters a token (roughly what
    OpenAI's tokenizers make of JSON)."""
    words = sum(len(_text_of(m).split()) for m in messages)
    calls = [m["tool_calls"] for m in messages if m.get("tool_calls")]
    as_json = (json.dumps(tools) if tools else "") + (json.dumps(calls) if calls else "")
    return words + -(-len(as_json) // 4) or 1


def _usage(prompt: int, completion: int) -> dict[str, int]:
    return {
        "prompt_tokens": prompt,
        "completion_tokens": completion,
        "total_tokens": prompt + completion,
    }


def _completion_body(
    model: str, reply: Reply, prompt_tokens: int, max_tokens: int | None = None
) -> dict[str, Any]:
    text, finish = reply.text, None
    words = (text or "").split()
    if max_tokens is not None and reply.honours_max_tokens and len(words) > max_tokens:
        text, finish = " ".join(words[:max_tokens]), "length"
    tool_calls = [
        {
            "id": f"call_{uuid.uuid4().hex[:12]}",
            "type": "function",
            "function": {"name": name, "arguments": args},
        }
        for name, args in reply.tool_calls
    ]
    message: dict[str, Any] = {"role": "assistant", "content": text}
    if tool_calls:
        message["tool_calls"] = tool_calls
    completion_tokens = len((text or "").split()) + len(tool_calls)
    finish = finish or ("tool_calls" if tool_calls else "stop")
    return {
        "id": f"chatcmpl-{uuid.uuid4().hex}",
        "object": "chat.completion",
        "created": int(time.time()),
        "model": model,
        "choices": [
            {
                "index": 0,
                "message": message,
                "finish_reason": finish,
            }
        ],
        "usage": _usage(prompt_tokens, completion_tokens),
    }


async def _stream_chunks(body: dict[str, Any], include_usage: bool) -> AsyncIterator[str]:
    base = {
        "id": body["id"],
        "object": "chat.completion.chunk",
        "created": body["created"],
        "model": body["model"],
    }

    def chunk(delta: dict[str, Any], finish: str | None = None) -> str:
        choice = {"index": 0, "delta": delta, "finish_reason": finish}
        return f"data: {json.dumps({**base, 'choices': [choice]})}\n\n"

    message = body["choices"][0]["message"]
    yield chunk({"role": "assistant", "content": ""})
    for i, word in enumerate((message.get("content") or "").split(" ")):
        yield chunk({"content": word if i == 0 else " " + word})
        await asyncio.sleep(0)
    for index, call in enumerate(message.get("tool_calls", [])):
        head = {
            "index": index,
            "id": call["id"],
            "type": "function",
            "function": {"name": call["function"]["name"], "arguments": ""},
        }
        yield chunk({"tool_calls": [head]})
        args = call["function"]["arguments"]
        for start in range(0, len(args), 8):
            piece = {"index": index, "function": {"arguments": args[start : start + 8]}}
            yield chunk({"tool_calls": [piece]})
    yield chunk({}, body["choices"][0]["finish_reason"])
    if include_usage:
        yield f"data: {json.dumps({**base, 'choices': [], 'usage': body['usage']})}\n\n"
    yield "data: [DONE]\n\n"


async def chat_completions(request: Request) -> Response:
    payload = await request.json()
    model = payload.get("model", "scripted")
    messages = payload.get("messages", [])
    if request.app.state.calls is not None:
        request.app.state.calls.append(payload)
    reply = script_reply(model, messages)
    if reply.sleep_s:
        await asyncio.sleep(reply.sleep_s)
    if reply.fail_status and not (reply.fail_once and _failed_before(request, messages)):
        error = {"message": f"scripted failure {reply.fail_status}", "type": "server_error"}
        return JSONResponse({"error": error}, status_code=reply.fail_status)
    max_tokens = payload.get("max_completion_tokens") or payload.get("max_tokens")
    prompt_tokens = _prompt_tokens(messages, payload.get("tools") or [])
    body = _completion_body(model, reply, prompt_tokens, max_tokens)
    if payload.get("stream"):
        include_usage = bool((payload.get("stream_options") or {}).get("include_usage"))
        return StreamingResponse(
            _stream_chunks(body, include_usage), media_type="text/event-stream"
        )
    return JSONResponse(body)


def _failed_before(request: Request, messages: list[dict[str, Any]]) -> bool:
    """Whether this conversation was already failed once (from now on it has been)."""
    key = json.dumps(messages, sort_keys=True)
    failed: set[str] = request.app.state.failed_once
    if key in failed:
        return True
    failed.add(key)
    return False


async def list_models(request: Request) -> Response:
    return JSONResponse(
        {
            "object": "list",
            "data": [
                {"id": "scripted", "object": "model", "created": 0, "owned_by": "toolbridge-demo"}
            ],
        }
    )


def create_scripted_model_app(*, record: bool = False) -> Starlette:
    """The scripted model as an ASGI app; with ``record`` (tests), ``app.state.calls`` keeps
    every request body (not in the demo or the bench: a served process would only grow)."""
    app = Starlette(
        routes=[
            Route("/v1/chat/completions", chat_completions, methods=["POST"]),
            Route("/chat/completions", chat_completions, methods=["POST"]),
            Route("/v1/models", list_models, methods=["GET"]),
        ]
    )
    app.state.calls = [] if record else None
    app.state.failed_once = set()
    return app
