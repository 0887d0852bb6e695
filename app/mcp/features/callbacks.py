"""What toolbridge answers when an MCP server calls back during a tool call.

Each connection gets its own ``ServerCallbacks``, bound to the one run it serves at a time
(``bind`` when a run leases it, ``unbind`` when the run is done: ``app/mcp/sessions/pool.py``), so a
request is answered for exactly the caller (and run) whose tool call caused it.

- ``elicitation/create``: there is no human on our side, so every elicitation, form or URL
  mode, in both protocol eras, is answered ``{"action": "decline"}``: a spec-conformant answer
  the server can handle. A WARNING names the server and mode (never the contents) and the
  caller sees a note on the MCP call.
- ``sampling/createMessage``: handed to the run's ``Sampler`` (``app/sampling``).
- A capability we did not declare but the server uses anyway is refused by the SDK; we log it.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol

import mcp_types as types
from mcp.client.session import ClientRequestContext

from app.mcp.features.notes import CapabilityRefused, ElicitationDeclined, Note, Notes
from app.mcp.features.tasks import TASKS
from app.mcp.sessions.sdk_internals import InputDispatch, wrap_input_dispatch

logger = logging.getLogger(__name__)


class Sampler(Protocol):
    """Answers ``sampling/createMessage`` for one server of one run."""

    async def sample(
        self, params: types.CreateMessageRequestParams, notes: list[Note], nth_in_call: int
    ) -> types.CreateMessageResult | types.CreateMessageResultWithTools | types.ErrorData: ...


class _NoRun:
    """Answers sampling between runs: refused, no run to charge it to."""

    async def sample(
        self, params: types.CreateMessageRequestParams, notes: list[Note], nth_in_call: int
    ) -> types.ErrorData:
        logger.warning("sampling request refused: no tool call in progress")
        return types.ErrorData(code=types.INVALID_REQUEST, message="no tool call in progress")


_NO_RUN = _NoRun()


@dataclass
class ServerCallbacks:
    """The callbacks of one MCP connection, and the notes they leave for the caller."""

    server_label: str
    sampler: Sampler | None = None
    """None: sampling is not allowed for this server, and not declared."""
    declare_elicitation: bool = True
    notes: Notes = field(default_factory=Notes)
    calls_in_flight: int = 0
    samples_in_call: int = 0
    """Sampling requests since the current tool call(s) began (parallel calls share it)."""
    tools_changed: bool = False
    """The server said ``notifications/tools/list_changed`` on this connection."""

    def bind(self, label: str, sampler: Sampler | None) -> None:
        """Serve a new run: its sampler and label, and fresh notes and counts."""
        assert (sampler is None) == (self.sampler is None), "the declaration must not change"
        self.server_label, self.sampler = label, sampler
        self.notes, self.calls_in_flight, self.samples_in_call = Notes(), 0, 0

    def unbind(self) -> None:
        """No run is served: what the server asks for until the next ``bind`` is refused."""
        if self.sampler is not None:
            self.sampler = _NO_RUN
        self.notes = Notes()

    def begin_call(self) -> None:
        if self.calls_in_flight == 0:
            self.samples_in_call = 0
        self.calls_in_flight += 1

    def end_call(self) -> None:
        self.calls_in_flight -= 1

    async def elicit(
        self, context: ClientRequestContext, params: types.ElicitRequestParams
    ) -> types.ElicitResult:
        mode: Literal["form", "url"] = (
            "url" if isinstance(params, types.ElicitRequestURLParams) else "form"
        )
        logger.warning(
            "MCP server asked for user input; declined (no human here): server=%s mode=%s",
            self.server_label,
            mode,
        )
        url = params.url if isinstance(params, types.ElicitRequestURLParams) else None
        self.notes.append(ElicitationDeclined(mode=mode, message=params.message, url=url))
        return types.ElicitResult(action="decline")

    async def sample(
        self, context: ClientRequestContext, params: types.CreateMessageRequestParams
    ) -> types.CreateMessageResult | types.CreateMessageResultWithTools | types.ErrorData:
        assert self.sampler is not None, "sampling is only declared with a sampler"
        self.samples_in_call += 1
        return await self.sampler.sample(params, self.notes, self.samples_in_call)

    def saw_notification(self, method: str) -> None:
        """A server notification, in the order received (``intercept_notifications``); the SDK
        evicts the shared tool-list cache itself, later."""
        if method == "notifications/tools/list_changed":
            self.tools_changed = True

    def client_options(self) -> dict[str, Any]:
        """Arguments for ``mcp.Client``: a callback declares its capability."""
        options: dict[str, Any] = {}
        if self.sampler is not None:
            options["sampling_callback"] = self.sample
            options["sampling_capabilities"] = types.SamplingCapability(
                tools=types.SamplingToolsCapability()
            )
        if self.declare_elicitation:
            options["elicitation_callback"] = self.elicit
        options["extensions"] = [TASKS]
        return options

    def declaration(self) -> str:
        """What these callbacks make the client declare, as text: a part of every cache key for
        what the server answers, since a server may answer clients that declare differently
        differently (e.g. offer a tool only to clients that can sample)."""
        options = self.client_options()
        sampling = options.get("sampling_capabilities")
        declared = {
            "sampling": None if sampling is None else sampling.model_dump(mode="json"),
            "elicitation": "elicitation_callback" in options,
            "extensions": sorted(e.identifier for e in options["extensions"]),
        }
        return json.dumps(declared, sort_keys=True)

    def watch_undeclared(self, session: Any) -> None:
        """Log requests for capabilities we did not declare (the SDK refuses them itself)."""

        def logging_dispatch(dispatch: InputDispatch) -> InputDispatch:
            async def logged(ctx: Any, request: types.InputRequest) -> Any:
                method = getattr(request, "method", type(request).__name__)
                undeclared = (method == "sampling/createMessage" and self.sampler is None) or (
                    method == "elicitation/create" and not self.declare_elicitation
                )
                if undeclared:
                    logger.warning(
                        "MCP server used a capability toolbridge did not declare; "
                        "refused: server=%s method=%s",
                        self.server_label,
                        method,
                    )
                    self.notes.append(
                        CapabilityRefused(
                            method=method, message=f"{method} is not allowed for this server"
                        )
                    )
                return await dispatch(ctx, request)

            return logged

        wrap_input_dispatch(session, logging_dispatch)
