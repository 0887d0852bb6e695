"""When toolbridge asks a 2025-11-25 server for a task: only for tools that require one, on
servers that take task calls (``optional`` runs plainly, ``forbidden`` never as a task)."""

from __future__ import annotations

import mcp_types as types
import pytest

from app.mcp.features.tasks import _poll_interval_s, wants_legacy_task

TAKES_TASKS = types.ServerCapabilities(
    tasks=types.ServerTasksCapability(
        requests=types.ServerTasksRequestsCapability(
            tools=types.TasksToolsCapability(call=types.TasksCallCapability())
        )
    )
)


def _tool(task_support: str | None) -> types.Tool:
    execution = None if task_support is None else types.ToolExecution(task_support=task_support)  # type: ignore[arg-type]
    return types.Tool(name="t", input_schema={"type": "object"}, execution=execution)


@pytest.mark.parametrize(
    ("task_support", "capabilities", "as_task"),
    [
        ("required", TAKES_TASKS, True),
        ("optional", TAKES_TASKS, False),
        ("forbidden", TAKES_TASKS, False),
        (None, TAKES_TASKS, False),
        ("required", types.ServerCapabilities(), False),
        ("required", types.ServerCapabilities(tasks=types.ServerTasksCapability()), False),
    ],
)
def test_a_task_is_asked_for_only_where_required_and_supported(
    task_support: str | None, capabilities: types.ServerCapabilities, as_task: bool
) -> None:
    assert wants_legacy_task(_tool(task_support), capabilities) is as_task


def test_an_unknown_tool_is_never_sent_as_a_task() -> None:
    assert wants_legacy_task(None, TAKES_TASKS) is False


@pytest.mark.parametrize(
    ("interval_ms", "seconds"), [(None, 1.0), (250, 0.25), (0, 0.05), (10**9, 30.0)]
)
def test_the_servers_poll_interval_is_honoured_within_bounds(
    interval_ms: int | None, seconds: float
) -> None:
    assert _poll_interval_s(interval_ms) == seconds


def test_the_sdk_builds_the_result_adapter_for_the_tasks_claim_once() -> None:
    from mcp.client import session as sdk_session

    from app.mcp.features.tasks import TASKS

    active = {"task": TASKS.claims()[0]}
    first = sdk_session._build_call_tool_adapter(active)
    assert sdk_session._build_call_tool_adapter(dict(active)) is first
    # ...and it still tells a task from a tool result.
    task = {"resultType": "task", "taskId": "t1", "status": "working"}
    assert type(first.validate_python(task)).__name__ == "CreatedTask"
