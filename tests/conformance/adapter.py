"""The client under test for the MCP conformance suite: toolbridge, driven over its API.

The suite runs ``python -m tests.conformance.adapter <server url>`` with the scenario's name in
``MCP_CONFORMANCE_SCENARIO``. This lists the scenario server's tools through ``/v1/responses``
(toolbridge is the MCP client), then has the scripted model call each tool through
``/v1/chat/completions``, with arguments built from the schema toolbridge reported. The
toolbridge to use is named by ``TB_URL`` and ``TB_KEY``.

``auth/*`` scenarios test a client that authenticates itself (client credentials, SEP-1046):
for them the adapter starts a toolbridge of its own with the scenario's server registered
with the credentials the suite hands over, and exercises it the same way.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
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
    scenario = os.environ.get("MCP_CONFORMANCE_SCENARIO", "")
    if scenario.startswith("auth/"):
        with _registered_with_credentials(server_url) as base:
            tool = {"type": "mcp", "server_label": "s", "require_approval": "never"}
            _exercise(base, "anything", "toolbridge-demo", tool, scenario)
        return
    tool = {
        "type": "mcp",
        "server_label": "s",
        "server_url": server_url,
        "require_approval": "never",
    }
    _exercise(os.environ["TB_URL"], os.environ["TB_KEY"], "scripted-a", tool, scenario)


@contextlib.contextmanager
def _registered_with_credentials(server_url: str) -> Iterator[str]:
    """A toolbridge of its own (``python -m app``) with the scenario's server registered with
    the credentials the suite hands the client (``MCP_CONFORMANCE_CONTEXT``), as an operator
    registers a server behind their identity provider: secrets through the environment, and
    the issuer they know (read here from the server's Protected Resource Metadata)."""
    context = json.loads(os.environ.get("MCP_CONFORMANCE_CONTEXT", "{}"))
    registered: dict[str, Any] = {
        "label": "s",
        "url": server_url,
        "auth_type": "oauth2",
        "oauth2_flow": "client_credentials",
        "client_id": context["client_id"],
        "issuer": _issuer_of(server_url),
    }
    env = {k: v for k, v in os.environ.items() if not k.startswith("TOOLBRIDGE_")}
    if "private_key_pem" in context:
        registered |= {
            "token_endpoint_auth_method": "private_key_jwt",
            "private_key": "os.environ/CONFORMANCE_PRIVATE_KEY",
            "signing_algorithm": context.get("signing_algorithm", "RS256"),
        }
        env["CONFORMANCE_PRIVATE_KEY"] = context["private_key_pem"]
    else:
        registered["client_secret"] = "os.environ/CONFORMANCE_CLIENT_SECRET"
        env["CONFORMANCE_CLIENT_SECRET"] = context["client_secret"]
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    data = tempfile.mkdtemp(prefix="tb-conformance-")
    env |= {
        "TOOLBRIDGE_PORT": str(port),
        "TOOLBRIDGE_ALLOW_ANONYMOUS": "true",
        "TOOLBRIDGE_DEMO": "on",
        "TOOLBRIDGE_DATA_DIR": data,
        "TOOLBRIDGE_MCP_SERVERS": json.dumps([registered]),
        "TOOLBRIDGE_MCP_POOL__MAX_IDLE": "0",
    }
    process = subprocess.Popen([sys.executable, "-m", "app"], env=env, stdout=sys.stderr)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                if httpx.get(f"{base}/readyz", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError("toolbridge did not start")
            time.sleep(0.1)
        yield base
    finally:
        process.terminate()
        process.wait(30)
        shutil.rmtree(data, ignore_errors=True)


def _issuer_of(server_url: str) -> str:
    """The first authorization server the MCP server's metadata names (RFC 9728)."""
    challenge = httpx.post(server_url, json={}, timeout=10).headers.get("www-authenticate", "")
    found = re.search(r'resource_metadata="([^"]+)"', challenge)
    origin = re.match(r"https?://[^/]+", server_url)
    assert origin is not None
    metadata_url = (
        found.group(1) if found else f"{origin.group(0)}/.well-known/oauth-protected-resource"
    )
    metadata = httpx.get(metadata_url, timeout=10).json()
    return str(metadata["authorization_servers"][0])


def _exercise(base: str, key: str, model: str, tool: dict[str, Any], scenario: str) -> None:
    """List the server's tools through toolbridge, then call each one."""
    headers = {"Authorization": f"Bearer {key}"}
    listed = httpx.post(
        f"{base}/v1/responses",
        json={"model": model, "input": "say listed", "tools": [tool]},
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
                "model": model,
                "messages": [{"role": "user", "content": script}],
                "tools": [tool],
            },
            headers=headers,
            timeout=60,
        )
        print("call", entry["name"], called.status_code, called.text[:500], file=sys.stderr)


if __name__ == "__main__":
    main(sys.argv[-1])
