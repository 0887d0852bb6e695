"""MCP tasks: a tool call the server runs in the background while toolbridge polls for it.

Two wires, one behaviour for the caller (the task's final result is the call's result):

- 2026-07-28, the ``io.modelcontextprotocol/tasks`` extension: we declare it on every request,
  and the server may answer any ``tools/call`` with ``resultType: "task"``. ``TasksExtension``
  claims that result through the SDK's public extension interface (``ClientExtension`` /
  ``ResultClaim``), so it can give way to the SDK's own runtime when one lands: poll
  ``tasks/get`` (``Mcp-Name: <taskId>``), answer ``inputRequests`` with ``tasks/update``.
- 2025-11-25 tasks: the client asks for one with ``params.task``, which ``run_legacy_task`` does
  only for a tool whose ``execution.taskSupport`` is ``required`` on a server that supports task
  calls (``optional`` tools are called plainly: one round trip; ``forbidden`` never as a task).
  Poll ``tasks/get``; once the task ends or needs input, ``tasks/result`` delivers the server's
  requests (answered by the session's callbacks) and then the result.

The caller's tool timeout covers the whole task, polling included. A task we stop waiting for
(the timeout, the client went away, a failure) is cancelled with ``tasks/cancel``. Inside a
task, sampling and elicitation are answered exactly as elsewhere (our models and budgets;
declined), and each status change reaches ``observing``'s callback (the call's notes, and
streaming clients).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Any, ClassVar, Literal

import anyio
import mcp_types as types
from mcp.client.extension import ClaimContext, ClientExtension, ResultClaim
from mcp.client.session import ClientRequestContext, ClientSession
from mcp.shared.exceptions import MCPError
from mcp_types.jsonrpc import INTERNAL_ERROR

from app.mcp.features.notes import TaskState
from app.mcp.sessions.sdk_internals import cache_claim_adapters, send_unvalidated

logger = logging.getLogger(__name__)

IDENTIFIER = "io.modelcontextprotocol/tasks"
TERMINAL = frozenset({"completed", "failed", "cancelled"})
DEFAULT_POLL_S = 1.0
"""How often to poll a task whose server suggests no interval."""
POLL_BOUNDS_S = (0.05, 30.0)
"""A server's suggested interval, clamped: never a busy loop, never so slow a task looks hung."""
CANCEL_TIMEOUT_S = 5.0

_observer: ContextVar[Callable[[TaskState], None] | None] = ContextVar(
    "toolbridge_task_observer", default=None
)


@contextmanager
def observing(callback: Callable[[TaskState], None]) -> Iterator[None]:
    """Within this block, every task status a tool call goes through reaches ``callback``."""
    token = _observer.set(callback)
    try:
        yield
    finally:
        _observer.reset(token)


def _observe(task_id: str, status: str, message: str | None) -> None:
    callback = _observer.get()
    if callback is not None:
        callback(TaskState(task_id=task_id, status=status, message=message))


def _poll_interval_s(interval_ms: int | None) -> float:
    low, high = POLL_BOUNDS_S
    return DEFAULT_POLL_S if interval_ms is None else min(max(interval_ms / 1000, low), high)


class _TaskFields(types.Result):
    """2026-07-28's ``Task`` (the SDK types only 2025-11-25's, ``types.Task``)."""

    task_id: str
    status: str
    status_message: str | None = None
    poll_interval_ms: int | None = None


class CreatedTask(_TaskFields):
    """``CreateTaskResult``: a ``tools/call`` answered with a task handle."""

    result_type: Literal["task"]


class DetailedTask(_TaskFields):
    """``tasks/get``'s answer, with what the status carries."""

    input_requests: types.InputRequests | None = None
    result: dict[str, Any] | None = None
    error: types.ErrorData | None = None


_TaskParams = types.GetTaskRequestParams
"""``{"taskId"}``: the same params in both eras."""


class _UpdateParams(_TaskParams):
    input_responses: types.InputResponses


class _ModernTaskRequest(types.Request[Any, Any]):
    # Streamable HTTP routes tasks/* by ``Mcp-Name: <taskId>`` (the extension's MUST).
    name_param: ClassVar[str | None] = "taskId"


class GetTask(_ModernTaskRequest):
    method: Literal["tasks/get"] = "tasks/get"
    params: _TaskParams


class UpdateTask(_ModernTaskRequest):
    method: Literal["tasks/update"] = "tasks/update"
    params: _UpdateParams


class CancelTask(_ModernTaskRequest):
    method: Literal["tasks/cancel"] = "tasks/cancel"
    params: _TaskParams


class _Ack(types.Result):
    """Any result: an acknowledgement whose contents we do not need."""


async def _cancel(session: ClientSession, request: types.Request[Any, Any], task_id: str) -> None:
    """Ask the server to stop a task we no longer wait for; best effort, never blocks long."""
    with anyio.CancelScope(shield=True), anyio.move_on_after(CANCEL_TIMEOUT_S):
        try:
            await session.send_request(request, _Ack)
            logger.info("MCP task cancelled: task=%s", task_id)
        except Exception as exc:  # noqa: BLE001 - cancelling is a courtesy; the server may be gone
            logger.warning("MCP task could not be cancelled: task=%s (%s)", task_id, exc)


class TasksExtension(ClientExtension):
    """Declares ``io.modelcontextprotocol/tasks`` and resolves the tasks servers create."""

    identifier = IDENTIFIER

    def __init__(self) -> None:
        self._claims = (ResultClaim(result_type="task", model=CreatedTask, resolve=self.resolve),)

    def claims(self) -> Sequence[ResultClaim[Any]]:
        return self._claims

    async def resolve(self, created: CreatedTask, ctx: ClaimContext) -> types.CallToolResult:
        """Poll the task to its end; cancel it if we stop waiting first."""
        session, task_id = ctx.session, created.task_id
        _observe(task_id, created.status, created.status_message)
        ended = False
        try:
            task = await self._until_done(session, created)
            ended = True
        finally:
            if not ended:
                await _cancel(session, CancelTask(params=_TaskParams(task_id=task_id)), task_id)
        match task.status:
            case "completed":
                return types.CallToolResult.model_validate(task.result or {}, by_name=False)
            case "failed" if task.error is not None:
                raise MCPError.from_error_data(task.error)
        raise MCPError(INTERNAL_ERROR, task.status_message or f"the task was {task.status}")

    async def _until_done(self, session: ClientSession, created: CreatedTask) -> DetailedTask:
        task_id, interval_ms = created.task_id, created.poll_interval_ms
        answered: set[str] = set()
        last = (created.status, created.status_message)
        while True:
            await anyio.sleep(_poll_interval_s(interval_ms))
            task = await session.send_request(
                GetTask(params=_TaskParams(task_id=task_id)), DetailedTask
            )
            interval_ms = task.poll_interval_ms or interval_ms
            if (task.status, task.status_message) != last:
                last = (task.status, task.status_message)
                _observe(task_id, task.status, task.status_message)
            if task.status in TERMINAL:
                return task
            pending = {
                key: request
                for key, request in (task.input_requests or {}).items()
                if key not in answered  # the same request stays listed until the server sees us
            }
            if task.status == "input_required" and pending:
                responses = await _answer(session, pending)
                answered.update(responses)
                await session.send_request(
                    UpdateTask(params=_UpdateParams(task_id=task_id, input_responses=responses)),
                    _Ack,
                )


async def _answer(
    session: ClientSession, requests: dict[str, types.InputRequest]
) -> types.InputResponses:
    """Answer a task's requests as the session answers any server request (same callbacks)."""
    responses: types.InputResponses = {}
    for key, request in requests.items():
        meta = request.params.meta if request.params else None
        ctx = ClientRequestContext(session=session, request_id=key, meta=meta)
        answer = await session.dispatch_input_request(ctx, request)
        if isinstance(answer, types.ErrorData):
            raise MCPError.from_error_data(answer)
        responses[key] = answer
    return responses


def takes_task_calls(capabilities: types.ServerCapabilities) -> bool:
    """2025-11-25: the server runs ``tools/call`` as a task when asked to."""
    requests = capabilities.tasks.requests if capabilities.tasks else None
    return requests is not None and requests.tools is not None and requests.tools.call is not None


TASKS = TasksExtension()
"""One instance for every client: it keeps no state, and the same claims let the SDK's result
adapter be built once (``sdk_internals.cache_claim_adapters``)."""
cache_claim_adapters()


def wants_legacy_task(tool: types.Tool | None, capabilities: types.ServerCapabilities) -> bool:
    """2025-11-25: ask for a task only where the tool requires one and the server takes them."""
    execution = tool.execution if tool is not None else None
    required = execution is not None and execution.task_support == "required"
    return required and takes_task_calls(capabilities)


async def run_legacy_task(
    session: ClientSession,
    name: str,
    arguments: dict[str, Any],
    *,
    ttl_ms: int,
) -> types.CallToolResult:
    """A 2025-11-25 task-augmented ``tools/call``, to its result."""
    call = types.CallToolRequest(
        params=types.CallToolRequestParams(
            name=name, arguments=arguments, task=types.TaskMetadata(ttl=ttl_ms)
        )
    )
    task = types.CreateTaskResult.model_validate(await send_unvalidated(session, call)).task
    task_id = task.task_id
    _observe(task_id, task.status, task.status_message)
    cancel = types.CancelTaskRequest(params=types.CancelTaskRequestParams(task_id=task_id))
    ended = False
    try:
        while task.status == "working":
            await anyio.sleep(_poll_interval_s(task.poll_interval))
            polled = await session.send_request(
                types.GetTaskRequest(params=types.GetTaskRequestParams(task_id=task_id)),
                types.GetTaskResult,
            )
            if (polled.status, polled.status_message) != (task.status, task.status_message):
                _observe(task_id, polled.status, polled.status_message)
            task = polled
        if task.status == "cancelled":
            ended = True
            raise MCPError(INTERNAL_ERROR, task.status_message or "the task was cancelled")
        # Ended, or needs input: the server's requests arrive on this request's stream, and the
        # answer (the tool's result, or the task's JSON-RPC error) once the task has ended.
        payload = types.GetTaskPayloadRequest(
            params=types.GetTaskPayloadRequestParams(task_id=task_id)
        )
        try:
            result = await session.send_request(payload, types.CallToolResult)
        except MCPError:
            ended = True  # the task's own failure: nothing left to cancel
            raise
        ended = True
    finally:
        if not ended:
            await _cancel(session, cancel, task_id)
    if task.status != "completed":
        _observe(task_id, "completed", None)
    if not result.is_error:  # as the SDK does for a plain call
        await session.validate_tool_result(name, result)
    return result
