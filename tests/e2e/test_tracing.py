"""OpenTelemetry spans reach a real OTLP/HTTP receiver, with GenAI attributes and no secrets."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from typing import Any

import openai
import pytest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from tests.conftest import TEST_KEY
from tests.fixtures.servers import ServerThread

SECRET = "otel-SECRET-91b2"


@pytest.fixture
def receiver() -> Iterator[tuple[ServerThread, list[dict[str, Any]]]]:
    spans: list[dict[str, Any]] = []

    async def traces(request: Request) -> Response:
        export = ExportTraceServiceRequest.FromString(await request.body())
        for resource in export.resource_spans:
            for scope in resource.scope_spans:
                for item in scope.spans:
                    attributes = {a.key: str(a.value) for a in item.attributes}
                    spans.append(
                        {
                            "name": item.name,
                            "attributes": attributes,
                            "trace": item.trace_id.hex(),
                            "id": item.span_id,
                            "parent": item.parent_span_id,
                        }
                    )
        return Response(status_code=200)

    server = ServerThread(Starlette(routes=[Route("/v1/traces", traces, methods=["POST"])]))
    yield server.start(), spans
    server.stop()


def test_run_model_tool_and_sampling_spans(
    receiver: Any, toolbridge_factory: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    collector, spans = receiver
    monkeypatch.setenv("OTEL_BSP_SCHEDULE_DELAY", "100")
    server = toolbridge_factory(otlp_endpoint=collector.url)
    client = openai.OpenAI(base_url=f"{server.url}/v1", api_key=TEST_KEY, max_retries=0)
    args = {"prompt": "p", "hints": [], "priorities": {}, "max_tokens": 20}
    client.chat.completions.create(
        model="scripted-a",
        tools=[
            {
                "type": "mcp",
                "server_label": "sampler",  # type: ignore[list-item]
                "headers": {"X-Secret": SECRET},
            }
        ],
        messages=[{"role": "user", "content": f"call sampler__summarize {json.dumps(args)}"}],
    )
    deadline = time.monotonic() + 15
    while not any(s["name"] == "invoke_agent toolbridge" for s in spans):
        assert time.monotonic() < deadline, "no run span arrived"
        time.sleep(0.1)
    run = next(s for s in spans if s["name"] == "invoke_agent toolbridge")
    ours = ("invoke_agent ", "chat ", "execute_tool ")  # the mcp SDK adds spans of its own
    mine = [s for s in spans if s["trace"] == run["trace"] and s["name"].startswith(ours)]
    names = sorted(s["name"] for s in mine)
    assert names == ["chat scripted-a"] * 3 + ["execute_tool summarize", "invoke_agent toolbridge"]
    tool = next(s for s in mine if s["name"] == "execute_tool summarize")
    assert 'string_value: "execute_tool"' in tool["attributes"]["gen_ai.operation.name"]
    sampled = [s for s in mine if "toolbridge.sampling.server_label" in s["attributes"]]
    assert len(sampled) == 1 and "gen_ai.usage.output_tokens" in sampled[0]["attributes"]
    assert all(s["parent"] for s in mine if s is not run)  # children of the run span
    assert SECRET not in json.dumps(spans, default=str)
    # FastAPI's span of the request, named by its router (traced, no route skips the router)
    assert any(s["name"] == "POST /v1/chat/completions" for s in spans), spans
    # The call took its span's context to the server (SEP-414): the spans of the call's request
    # (the SDK's, the server's) are children of the tool's span.
    children = {s["name"] for s in spans if s["parent"] == tool["id"]}
    assert any("tools/call" in name for name in children), children
    server.stop()  # while the receiver still takes its last spans (else their export retries)
