"""MCP tasks (``io.modelcontextprotocol/tasks``, 2026-07-28) against a real SDK server: the
task's result is the call's result; polling honours ``pollIntervalMs`` and routes by
``Mcp-Name``; input inside a task is answered as anywhere else; a task we stop waiting for is
cancelled."""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import openai
import pytest

from app.config import RegisteredServer
from tests.conftest import TEST_KEY
from tests.fixtures.mcp_servers import RequestLog, _counting
from tests.fixtures.servers import ServerThread
from tests.fixtures.task_servers import POLL_INTERVAL_MS, TaskLog, build_task_server


@dataclass
class TaskServer:
    url: str
    log: TaskLog
    requests: RequestLog


@pytest.fixture(scope="module")
def task_server() -> Iterator[TaskServer]:
    log, requests = TaskLog(), RequestLog()
    app = build_task_server(log).streamable_http_app()
    thread = ServerThread(_counting(app, requests)).start()
    yield TaskServer(url=f"{thread.url}/mcp", log=log, requests=requests)
    thread.stop()


@pytest.fixture(scope="module")
def tasks_client(
    toolbridge_factory: Callable[..., ServerThread], task_server: TaskServer
) -> openai.OpenAI:
    """A toolbridge with the task server registered (sampling allowed, for input requests)."""
    bridge = toolbridge_factory(
        mcp_servers=[RegisteredServer(label="tasks", url=task_server.url, sampling=True)]
    )
    return openai.OpenAI(base_url=f"{bridge.url}/v1", api_key=TEST_KEY, max_retries=0)


TOOLS: Any = [{"type": "mcp", "server_label": "tasks", "require_approval": "never"}]


def _call(client: openai.OpenAI, script: str, **extra: Any) -> dict[str, Any]:
    completion = client.chat.completions.create(
        model="scripted-a", tools=TOOLS, messages=[{"role": "user", "content": script}], **extra
    )
    calls: list[dict[str, Any]] = completion.model_extra["toolbridge"]["mcp_calls"]  # type: ignore[index]
    assert len(calls) == 1
    return {"content": completion.choices[0].message.content, **calls[0]}


def test_a_task_result_is_the_calls_result(
    tasks_client: openai.OpenAI, task_server: TaskServer
) -> None:
    task_server.requests.reset()
    polls_before = task_server.log.polls
    started = time.monotonic()
    call = _call(tasks_client, 'call tasks__research {"topic": "tides", "seconds": 0.5}')
    elapsed_s = time.monotonic() - started
    assert call["content"] == "done: tasks__research=report on tides"
    assert call["output"] == "report on tides" and call.get("error") is None
    task_ids = [n["task_id"] for n in call["notes"] if n["kind"] == "task"]
    assert [n for n in call["notes"] if n["kind"] == "task"] == [
        {"kind": "task", "task_id": task_ids[0], "status": "completed"}
    ]
    assert task_server.log.plain_calls == 0  # the server saw us declare the extension
    # Polled at the server's pace (100 ms): at least once, never sooner than the interval after
    # the last poll, so no more polls than the call's time allows (a count, not a window).
    polls = task_server.log.polls - polls_before
    interval_s = POLL_INTERVAL_MS / 1000
    assert 1 <= polls <= elapsed_s / (interval_s * 0.9) + 1, (polls, elapsed_s)
    gaps = task_server.log.poll_gaps_s[-(polls - 1) :] if polls > 1 else []
    assert all(gap >= interval_s * 0.9 for gap in gaps), gaps
    # Every tasks/get carried Mcp-Name: <taskId> (the extension's routing MUST).
    named = [h for h in task_server.requests.headers if h.get("mcp-method") == "tasks/get"]
    assert len(named) == polls and {h["mcp-name"] for h in named} == {task_ids[0]}


def test_input_inside_a_task_is_answered_like_any_other(
    tasks_client: openai.OpenAI, task_server: TaskServer
) -> None:
    call = _call(tasks_client, 'call tasks__clarify {"topic": "python"}')
    # The elicitation was declined, the sample came from our model (charged, noted).
    assert call["output"].startswith("elicitation decline; sampled "), call["output"]
    kinds = [n["kind"] for n in call["notes"]]
    assert "elicitation_declined" in kinds and "sampling" in kinds
    sampled = next(n for n in call["notes"] if n["kind"] == "sampling")
    assert sampled["model"] == "scripted-a" and sampled["cost_usd"] > 0
    assert [n["status"] for n in call["notes"] if n["kind"] == "task"] == ["completed"]
    # Each request was answered once, although every poll listed it until then.
    answered = [key for update in task_server.log.updates for key in update]
    assert sorted(answered) == ["draft", "which"]
    assert next(u["which"] for u in task_server.log.updates if "which" in u) == {
        "action": "decline"
    }


def test_a_failed_task_is_a_protocol_error(tasks_client: openai.OpenAI) -> None:
    call = _call(tasks_client, "call tasks__crash {}")
    assert call["error"] == {
        "type": "mcp_protocol_error",
        "code": -32603,
        "message": "upstream rate limit",
    }


def test_the_tool_timeout_covers_the_task_and_cancels_it(
    tasks_client: openai.OpenAI, task_server: TaskServer
) -> None:
    cancelled_before = len(task_server.log.cancelled)
    started = time.monotonic()
    call = _call(
        tasks_client,
        'call tasks__research {"topic": "forever", "seconds": 60}',
        extra_body={"mcp_limits": {"tool_timeout_s": 0.6}},
    )
    assert time.monotonic() - started < 5
    assert call["error"]["code"] == -32001 and "timed out" in call["error"]["message"]
    assert len(task_server.log.cancelled) == cancelled_before + 1
    task_id = task_server.log.cancelled[-1]
    assert task_server.log.tasks[task_id].arguments["topic"] == "forever"


def test_streaming_clients_see_task_status_and_a_disconnect_cancels(
    tasks_client: openai.OpenAI, task_server: TaskServer
) -> None:
    body = {
        "model": "scripted-a",
        "stream": True,
        "tools": TOOLS,
        "input": 'call tasks__research {"topic": "a long one", "seconds": 60}',
    }
    cancelled_before = len(task_server.log.cancelled)
    comments: list[str] = []
    with httpx.stream(
        "POST",
        f"{tasks_client.base_url}responses",
        json=body,
        timeout=30,
        headers={"Authorization": f"Bearer {TEST_KEY}"},
    ) as response:
        assert response.status_code == 200
        for line in response.iter_lines():
            if line.startswith(": task "):
                comments.append(line)
                break  # the client goes away while the task works
    assert comments[0].endswith("working gathering sources"), comments
    deadline = time.monotonic() + 10
    while len(task_server.log.cancelled) == cancelled_before:
        assert time.monotonic() < deadline, "the task was not cancelled"
        time.sleep(0.05)
    assert task_server.log.tasks[task_server.log.cancelled[-1]].arguments["topic"] == "a long one"


def test_the_sdk_stream_helper_accepts_a_stream_with_task_status(
    tasks_client: openai.OpenAI,
) -> None:
    stream = tasks_client.responses.create(
        model="scripted-a",
        stream=True,
        tools=TOOLS,
        input='call tasks__research {"topic": "reefs", "seconds": 0.4}',
    )
    events = list(stream)
    done = [e for e in events if e.type == "response.output_item.done"]
    items = [e.item for e in done if e.item.type == "mcp_call"]
    assert items and items[0].output == "report on reefs"
    final = events[-1]
    assert final.type == "response.completed"
    assert json.loads(final.response.model_dump_json())["status"] == "completed"
