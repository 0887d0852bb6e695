"""What the caller should know about an MCP call: what the server asked of us meanwhile, and
how toolbridge answered. Renderers put them on the call (``notes``) as ``wire()`` gives them."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, Literal


@dataclass(frozen=True, slots=True, kw_only=True)
class ElicitationDeclined:
    """The server asked for user input (or needed the user at a URL); declined."""

    kind: Literal["elicitation_declined"] = "elicitation_declined"
    mode: Literal["form", "url"]
    message: str
    url: str | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class Sampled:
    """The server sampled one of our models, charged to the caller."""

    kind: Literal["sampling"] = "sampling"
    model: str
    prompt_tokens: int
    completion_tokens: int
    cost_usd: float


@dataclass(frozen=True, slots=True, kw_only=True)
class SamplingDeclined:
    """A sampling request was refused (a limit, the budget, no model, a failure)."""

    kind: Literal["sampling_refused"] = "sampling_refused"
    reason: str


@dataclass(frozen=True, slots=True, kw_only=True)
class CapabilityRefused:
    """The server used a capability toolbridge did not declare to it."""

    kind: Literal["refused"] = "refused"
    method: str
    message: str


@dataclass(frozen=True, slots=True, kw_only=True)
class Progress:
    """The latest progress the server reported for the call (``notifications/progress``)."""

    kind: Literal["progress"] = "progress"
    progress: float
    total: float | None = None
    message: str | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class TaskState:
    """The call runs as an MCP task (``app/mcp/features/tasks.py``): its latest status."""

    kind: Literal["task"] = "task"
    task_id: str
    status: str
    message: str | None = None


CallUpdate = Progress | TaskState
"""What a running call reports as it goes (streamed to the caller; the latest is a note)."""

Note = ElicitationDeclined | Sampled | SamplingDeclined | CapabilityRefused | Progress | TaskState

MAX_NOTES = 64
"""Notes one connection keeps for a run: a server that asks for input ten thousand times
during a call leaves the first 64, not a list that grows with every request."""


class Notes(list[Note]):
    """The notes of one connection for one run, at most ``MAX_NOTES`` (later ones dropped)."""

    def append(self, note: Note) -> None:
        if len(self) < MAX_NOTES:
            super().append(note)


def wire(note: Note) -> dict[str, Any]:
    """The note as the caller sees it: its fields, without empty optional ones."""
    return {k: v for k, v in dataclasses.asdict(note).items() if v is not None}
