"""The least CPU a Python service spends on the standard job: what ``bench.cpu`` measures
toolbridge against, to show how much of its CPU per run is its own.

A bare ASGI app on the same server stack as toolbridge (uvicorn with uvloop and httptools),
with the same clients (aiohttp, redis-py, orjson), making the same exchanges as a toolbridge
chat run without budget limits: the model twice, one ``tools/call`` POST to the 2026-07-28
server, and two Redis script calls (the first call's budget hold; the settlement of both).
Nothing else: no validation, no auth, no sessions, no errors handled, no streaming.
Not a service anyone should run.

``python -m bench.minimal --port P --model URL --mcp URL --redis URL``
"""

from __future__ import annotations

import argparse
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
HOLD = "return redis.call('INCRBYFLOAT', KEYS[1], ARGV[1])"


class Minimal:
    def __init__(self, model: str, mcp: str, redis: str) -> None:
        self.model, self.mcp, self.redis_url = f"{model}/v1/chat/completions", mcp, redis
        self.http: aiohttp.ClientSession | None = None
        self.redis: Redis | None = None

    async def _hold(self) -> None:
        assert self.redis is not None
        await self.redis.evalsha(self.sha, 1, "{bench-minimal}:spent", 0.001)

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
        await self._hold()
        first = await self._model(messages)
        call = first["tool_calls"][0]
        output = await self._call("add", orjson.loads(call["function"]["arguments"]))
        messages += [first, {"role": "tool", "tool_call_id": call["id"], "content": output}]
        second = await self._model(messages)
        await self._hold()
        return {"object": "chat.completion", "choices": [{"index": 0, "message": second}]}

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] == "lifespan":
            while (message := await receive())["type"] != "lifespan.shutdown":
                self.http = aiohttp.ClientSession()
                self.redis = Redis.from_url(self.redis_url)
                self.sha = await self.redis.script_load(HOLD)
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
