"""The client under test for the MCP conformance suite: toolbridge, driven over its API.

The suite runs ``python -m tests.conformance.adapter <server url>`` with the scenario's name in
``MCP_CONFORMANCE_SCENARIO``. This lists the scenario server's tools through ``/v1/responses``
(toolbridge is the MCP client), then has the scripted model call each tool through
``/v1/chat/completions``, with arguments built from the schema toolbridge reported. The
toolbridge to use is named by ``TB_URL`` and ``TB_KEY``.
"""

from __future__ import annotations

import json
import os
import sys
from typing import Any

import httpx

_ECHO_SCHEMA_TOOL = "json_schema_echo"
_UNSAFE = "héllo wörld\r"
"""A string that cannot be sent as a header value as is (it must be base64-encoded)."""


def _value(schema: dict[str, Any], scenario: str) -> Any:
    kind = schema.get("type")
    if "enum" in schema and schema["enum"]:
        return schema["enum"][0]
    if kind == "integer":
        return 7
    if kind == "number":
        return 1.5
    if kind == "boolean":
        return True
    if kind == "array":
        return []
    if kind == "object":
        return {}
    return _UNSAFE if scenario == "http-custom-headers" else "test"


def _arguments(tool: dict[str, Any], tools: list[dict[str, Any]], scenario: str) -> dict[str, Any]:
    if tool["name"] == _ECHO_SCHEMA_TOOL:  # send back the other tool's schema, as we reported it
        focal = next(t for t in tools if t["name"] != _ECHO_SCHEMA_TOOL)
        return {"schema": focal["input_schema"]}
    schema = tool.get("input_schema") or {}
    required = set(schema.get("required") or ())
    properties = schema.get("properties") or {}
    # Every parameter a model would fill, but optional flags: those it would leave out.
    return {
        name: _value(prop, scenario)
        for name, prop in properties.items()
        if name in required or prop.get("type") != "boolean"
    }


def main(server_url: str) -> None:
    base, key = os.environ["TB_URL"], os.environ["TB_KEY"]
    scenario = os.environ.get("MCP_CONFORMANCE_SCENARIO", "")
    headers = {"Authorization": f"Bearer {key}"}
    tool = {
        "type": "mcp",
        "server_label": "s",
        "server_url": server_url,
        "require_approval": "never",
    }
    listed = httpx.post(
        f"{base}/v1/responses",
        json={"model": "scripted-a", "input": "say listed", "tools": [tool]},
        headers=headers,
        timeout=60,
    )
    print("list", listed.status_code, listed.text[:500], file=sys.stderr)
    listed.raise_for_status()
    tools = listed.json()["output"][0]["tools"]
    for entry in tools:
        script = f"call s__{entry['name']} {json.dumps(_arguments(entry, tools, scenario))}"
        called = httpx.post(
            f"{base}/v1/chat/completions",
            json={
                "model": "scripted-a",
                "messages": [{"role": "user", "content": script}],
                "tools": [tool],
            },
            headers=headers,
            timeout=60,
        )
        print("call", entry["name"], called.status_code, called.text[:500], file=sys.stderr)


if __name__ == "__main__":
    main(sys.argv[-1])
