"""The least CPU a Python service spends on the standard job: what ``bench.cpu`` measures
toolbridge against, to show how much of its CPU per run is its own.

A bare ASGI app on the same server stack as toolbridge (uvicorn with uvloop and httptools),
with the same clients (aiohttp, redis-py, orjson), making the same exchanges as a toolbridge
run without budget limits under load, and nothing else: no validation, no auth, no sessions,
no errors handled. Not a service anyone should run.

- ``POST /v1/chat/completions``: the model twice, one ``tools/call`` POST to the 2026-07-28
  server, and one Redis script call (the settlement of both model calls).
- ``POST /v1/responses`` (streamed): the same, with both model calls streamed, the events of
  a streamed response written as toolbridge writes them (the same events, each with the same
  fields: a step's events in one write), and a second Redis call that stores the response.

``python -m bench.minimal --port P --model URL --mcp URL --redis URL``
"""

from __future__ import annotations

import argparse
import secrets
import time
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import orjson
import uvicorn
from redis.asyncio import Redis

TOOLS = [
    {
        "type": "function",
        "function": {
            "name": "demo__add",
            "description": "Add two numbers.",
            "parameters": {
                "type": "object",
                "properties": {"a": {"type": "number"}, "b": {"type": "number"}},
                "required": ["a", "b"],
            },
        },
    }
]
MCP_HEADERS = {
    "accept": "application/json, text/event-stream",
    "content-type": "application/json",
    "mcp-protocol-version": "2026-07-28",
    "mcp-method": "tools/call",
    "mcp-name": "add",
}
META = {
    "io.modelcontextprotocol/protocolVersion": "2026-07-28",
    "io.modelcontextprotocol/clientInfo": {"name": "minimal", "version": "0"},
    "io.modelcontextprotocol/clientCapabilities": {},
}
SETTLE = "return redis.call('INCRBYFLOAT', KEYS[1], ARGV[1])"
"""A run's settlement: its calls' cost added to what its key spent."""
LISTED = [  # the demo server's tools as toolbridge lists them (from its cache)
    {
        "name": name,
        "description": description,
        "input_schema": {
            "type": "object",
            "properties": properties,
            "required": list(properties),
            "title": f"{name}Arguments",
        },
        "annotations": {"readOnlyHint": True},
    }
    for name, description, properties in (
        ("add", "Add two numbers.", {"a": {"type": "number"}, "b": {"type": "number"}}),
        ("echo", "Return the text unchanged.", {"text": {"type": "string"}}),
        ("utc_time", "The current time in UTC, ISO 8601.", {}),
        ("wait", "Answers after ``seconds``.", {"seconds": {"type": "number"}}),
    )
]
RESPONSE = {  # the fields toolbridge's response object has, for the same request
    "object": "response",
    "status": "in_progress",
    "error": None,
    "incomplete_details": None,
    "output": [],
    "usage": {
        "input_tokens": 0,
        "input_tokens_details": {"cached_tokens": 0, "cache_write_tokens": 0},
        "output_tokens": 0,
        "output_tokens_details": {"reasoning_tokens": 0},
        "total_tokens": 0,
        "sampling": None,
    },
    "model": "bench",
    "instructions": None,
    "tools": [
        {
            "type": "mcp",
            "server_label": "demo",
            "require_approval": "never",
            "headers": None,
            "authorization": None,
        }
    ],
    "tool_choice": "auto",
    "parallel_tool_calls": True,
    "max_output_tokens": None,
    "max_tool_calls": None,
    "temperature": None,
    "top_p": None,
    "metadata": {},
    "previous_response_id": None,
    "conversation": None,
    "store": True,
    "user": None,
    "text": {"format": {"type": "text"}},
    "reasoning": {"effort": None, "summary": None},
    "truncation": "disabled",
    "background": False,
}
SSE_HEADERS = [(b"content-type", b"text/event-stream; charset=utf-8")]


class Events:
    """A streamed response's events, numbered, as SSE bytes."""

    def __init__(self) -> None:
        self.sequence = 0

    def __call__(self, kind: str, **fields: Any) -> bytes:
        data = orjson.dumps({"type": kind, "sequence_number": self.sequence, **fields})
        self.sequence += 1
        return b"event: " + kind.encode() + b"\ndata: " + data + b"\n\n"


class Minimal:
    def __init__(self, model: str, mcp: str, redis: str) -> None:
        self.model, self.mcp, self.redis_url = f"{model}/v1/chat/completions", mcp, redis
        self.http: aiohttp.ClientSession | None = None
        self.redis: Redis | None = None

    async def _settle(self) -> None:
        assert self.redis is not None
        await self.redis.evalsha(self.sha, 1, "{bench-minimal}:spent", 0.002)

    async def _streamed(self, messages: list[dict[str, Any]]) -> AsyncIterator[dict[str, Any]]:
        """A streamed model call's deltas."""
        assert self.http is not None
        body = orjson.dumps(
            {
                "model": "bench",
                "messages": messages,
                "tools": TOOLS,
                "stream": True,
                "stream_options": {"include_usage": True},
            }
        )
        headers = {"content-type": "application/json", "authorization": "Bearer x"}
        async with self.http.post(self.model, data=body, headers=headers) as answer:
            async for line in answer.content:
                if line.startswith(b"data: {"):
                    chunk = orjson.loads(line[6:])
                    if chunk["choices"]:
                        yield chunk["choices"][0]["delta"]

    async def _model(self, messages: list[dict[str, Any]]) -> dict[str, Any]:
        assert self.http is not None
        body = orjson.dumps({"model": "bench", "messages": messages, "tools": TOOLS})
        headers = {"content-type": "application/json", "authorization": "Bearer x"}
        async with self.http.post(self.model, data=body, headers=headers) as answer:
            message: dict[str, Any] = orjson.loads(await answer.read())["choices"][0]["message"]
            return message

    async def _call(self, name: str, arguments: dict[str, Any]) -> str:
        assert self.http is not None
        request = {"jsonrpc": "2.0", "id": 1, "method": "tools/call"}
        request["params"] = {"name": name, "arguments": arguments, "_meta": META}  # type: ignore[assignment]
        async with self.http.post(self.mcp, data=orjson.dumps(request), headers=MCP_HEADERS) as r:
            result = orjson.loads(await r.read())["result"]
        text: str = result["content"][0]["text"]
        return text

    async def run(self, request: dict[str, Any]) -> dict[str, Any]:
        messages = list(request["messages"])
        first = await self._model(messages)
        call = first["tool_calls"][0]
        output = await self._call("add", orjson.loads(call["function"]["arguments"]))
        messages += [first, {"role": "tool", "tool_call_id": call["id"], "content": output}]
        second = await self._model(messages)
        await self._settle()
        return {"object": "chat.completion", "choices": [{"index": 0, "message": second}]}

    async def respond(self, request: dict[str, Any], send: Any) -> None:
        """A streamed response: its events, each step's in one write."""
        event, response = Events(), {**RESPONSE, "id": f"resp_{secrets.token_hex(16)}"}
        response["created_at"] = int(time.time())

        async def write(*events: bytes, last: bool = False) -> None:
            await send(
                {"type": "http.response.body", "body": b"".join(events), "more_body": not last}
            )

        await send({"type": "http.response.start", "status": 200, "headers": SSE_HEADERS})
        listing = {"id": f"mcpl_{secrets.token_hex(16)}", "type": "mcp_list_tools"}
        listing |= {"server_label": "demo", "tools": LISTED, "error": None}
        ids = {"item_id": listing["id"], "output_index": 0}
        await write(
            event("response.created", response=response),
            event("response.in_progress", response=response),
            event("response.output_item.added", output_index=0, item=listing),
            event("response.mcp_list_tools.in_progress", **ids),
            event("response.mcp_list_tools.completed", **ids),
            event("response.output_item.done", output_index=0, item=listing),
        )
        messages: list[dict[str, Any]] = [{"role": "user", "content": request["input"]}]
        call: dict[str, Any] = {}
        arguments: list[str] = []
        async for delta in self._streamed(messages):
            for piece in delta.get("tool_calls") or ():
                call = call or {"id": piece["id"], "name": piece["function"]["name"]}
                arguments.append(piece["function"]["arguments"])
        joined = "".join(arguments)
        item = {"id": f"mcp_{secrets.token_hex(6)}", "type": "mcp_call", "server_label": "demo"}
        item |= {"name": "add", "arguments": joined, "output": None, "error": None}
        item |= {"status": "in_progress", "approval_request_id": None, "notes": []}
        ids = {"item_id": item["id"], "output_index": 1}
        await write(
            event("response.output_item.added", output_index=1, item=item),
            event("response.mcp_call.in_progress", **ids),
            event("response.mcp_call_arguments.delta", **ids, delta=joined),
            event("response.mcp_call_arguments.done", **ids, arguments=joined),
        )
        output = await self._call("add", orjson.loads(joined))
        item |= {"output": output, "status": "completed"}
        await write(
            event("response.mcp_call.completed", **ids),
            event("response.output_item.done", output_index=1, item=item),
        )
        tool_call = {"id": call["id"], "type": "function"}
        tool_call["function"] = {"name": call["name"], "arguments": joined}
        messages += [
            {"role": "assistant", "content": None, "tool_calls": [tool_call]},
            {"role": "tool", "tool_call_id": call["id"], "content": output},
        ]
        message = {"id": f"msg_{secrets.token_hex(16)}", "type": "message", "role": "assistant"}
        message |= {"status": "in_progress", "content": []}
        ids = {"item_id": message["id"], "output_index": 2, "content_index": 0}
        text: list[str] = []
        async for delta in self._streamed(messages):
            if not (piece := delta.get("content")):
                continue
            if not text:
                part = {"type": "output_text", "text": "", "annotations": []}
                await write(
                    event("response.output_item.added", output_index=2, item=message),
                    event("response.content_part.added", **ids, part=part),
                )
            text.append(piece)
            await write(event("response.output_text.delta", **ids, delta=piece, logprobs=[]))
        part = {"type": "output_text", "text": "".join(text), "annotations": [], "logprobs": []}
        message |= {"status": "completed", "content": [part]}
        response |= {"status": "completed", "output": [listing, item, message]}
        await self._settle()
        assert self.redis is not None
        record = orjson.dumps({"response": response, "input_items": messages[:1]})
        await self.redis.set(f"bench-minimal:{response['id']}", record, ex=3600)
        await write(
            event("response.output_text.done", **ids, text=part["text"], logprobs=[]),
            event("response.content_part.done", **ids, part=part),
            event("response.output_item.done", output_index=2, item=message),
            event("response.completed", response=response),
            last=True,
        )

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] == "lifespan":
            while (message := await receive())["type"] != "lifespan.shutdown":
                self.http = aiohttp.ClientSession()
                self.redis = Redis.from_url(self.redis_url)
                self.sha = await self.redis.script_load(SETTLE)
                await send({"type": "lifespan.startup.complete"})
            assert self.http is not None
            assert self.redis is not None
            await self.http.close()
            await self.redis.aclose()
            await send({"type": "lifespan.shutdown.complete"})
            return
        body = b""
        while True:
            message = await receive()
            body += message.get("body", b"")
            if not message.get("more_body"):
                break
        if scope["path"] == "/v1/responses":
            await self.respond(orjson.loads(body), send)
            return
        answer = orjson.dumps(await self.run(orjson.loads(body)) if body else {})
        headers = [(b"content-type", b"application/json")]
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        await send({"type": "http.response.body", "body": answer})


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    for name in ("model", "mcp", "redis"):
        parser.add_argument(f"--{name}", required=True)
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args()
    app = Minimal(args.model, args.mcp, args.redis)
    uvicorn.run(app, port=args.port, log_level="warning", access_log=False, lifespan="on")


if __name__ == "__main__":
    main()
