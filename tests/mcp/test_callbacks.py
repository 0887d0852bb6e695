"""A pooled session's callbacks serve the run that leased it, and no run between leases."""

from __future__ import annotations

from typing import Any

import anyio
import mcp_types as types

from app.mcp.features.callbacks import ServerCallbacks
from app.mcp.features.notes import Note

PARAMS = types.CreateMessageRequestParams(
    messages=[types.SamplingMessage(role="user", content=types.TextContent(text="hi"))],
    max_tokens=10,
)


class RecordingSampler:
    def __init__(self, name: str) -> None:
        self.name = name
        self.asked = 0

    async def sample(
        self, params: types.CreateMessageRequestParams, notes: list[Note], nth_in_call: int
    ) -> types.CreateMessageResult:
        self.asked += 1
        return types.CreateMessageResult(
            role="assistant", content=types.TextContent(text=self.name), model=self.name
        )


def sample(callbacks: ServerCallbacks) -> Any:
    return anyio.run(callbacks.sample, None, PARAMS)  # type: ignore[arg-type]


def test_a_bound_run_answers_and_between_runs_nothing_does() -> None:
    first, second = RecordingSampler("first"), RecordingSampler("second")
    callbacks = ServerCallbacks("srv", sampler=first)
    declared = callbacks.declaration()
    assert sample(callbacks).model == "first"
    first_notes = callbacks.notes
    callbacks.unbind()
    refused = sample(callbacks)
    assert isinstance(refused, types.ErrorData) and "no tool call in progress" in refused.message
    assert first.asked == 1  # the finished run is never charged for what comes after it
    callbacks.bind("srv2", second)
    assert callbacks.notes is not first_notes and callbacks.notes == []
    assert sample(callbacks).model == "second"
    assert (first.asked, second.asked) == (1, 1)
    assert callbacks.declaration() == declared  # what the server was told stays true
