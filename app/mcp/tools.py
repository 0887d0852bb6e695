"""MCP tools as the model sees them (OpenAI function tools), and back again."""

from __future__ import annotations

import copy
import json
from collections import OrderedDict
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import jsonschema
import mcp_types as types
from referencing.exceptions import Unresolvable

from app.mcp.naming import build_name_map
from app.mcp.schemas import BrokenSchema, validator_for
from app.mcp.sessions.session import ServerSession

_SCHEMAS: OrderedDict[int, tuple[types.Tool, dict[str, Any]]] = OrderedDict()
_SCHEMAS_KEPT = 4096
"""Tools whose function schema is kept (a warm session's tools are the same objects run
after run: converting them again was a visible share of a run's CPU)."""


def function_schema(tool: types.Tool) -> dict[str, Any]:
    """The tool's input schema as OpenAI function parameters (shared: do not modify it).

    MCP does not require ``properties`` and OpenAI does, so an object schema without them
    gets an empty one.
    """
    kept = _SCHEMAS.get(id(tool))
    if kept is not None and kept[0] is tool:
        return kept[1]
    schema = copy.deepcopy(tool.input_schema) or {"type": "object"}
    if schema.get("type") == "object":
        schema.setdefault("properties", {})
    _SCHEMAS[id(tool)] = (tool, schema)  # the tool is held, so its id is not reused meanwhile
    if len(_SCHEMAS) > _SCHEMAS_KEPT:
        _SCHEMAS.popitem(last=False)
    return schema


@dataclass(frozen=True, slots=True)
class Arguments:
    """Arguments that may be sent to the server."""

    value: dict[str, Any]


@dataclass(frozen=True, slots=True)
class BadArguments:
    """Why the model's arguments cannot be sent (the model reads it as the tool's error)."""

    reason: str


@dataclass(frozen=True, slots=True)
class BoundTool:
    """An MCP tool bound to the open session that runs it."""

    name: str
    """The model-facing name."""
    session: ServerSession
    tool: types.Tool

    @property
    def server_label(self) -> str:
        return self.session.spec.label

    @property
    def requires_approval(self) -> bool:
        return self.session.spec.approval.requires_approval(self.tool)

    def parse_arguments(self, raw: str, *, max_bytes: int) -> Arguments | BadArguments:
        """The model's arguments as an object, or why they cannot be sent to the server."""
        if len(raw.encode()) > max_bytes:
            return BadArguments(f"The arguments are larger than {max_bytes} bytes.")
        try:
            arguments = json.loads(raw or "{}")
        except json.JSONDecodeError as exc:
            return BadArguments(f"The arguments are not valid JSON: {exc}")
        if not isinstance(arguments, dict):
            return BadArguments("The arguments must be a JSON object.")
        try:
            validator = validator_for(self.tool.input_schema or {})
            error = jsonschema.exceptions.best_match(validator.iter_errors(arguments))
        except BrokenSchema:  # a schema that is itself broken: the server judges its input
            error = None
        except Unresolvable:  # a $ref we will not fetch: the server judges that part itself
            error = None
        if error is not None:
            where = "/".join(str(p) for p in error.absolute_path) or "(root)"
            return BadArguments(
                f"The arguments do not match the tool's input schema at {where}: {error.message}"
            )
        return Arguments(arguments)

    def model_tool(self) -> dict[str, Any]:
        function: dict[str, Any] = {"name": self.name, "parameters": function_schema(self.tool)}
        if self.tool.description:
            function["description"] = self.tool.description
        return {"type": "function", "function": function}


class Toolset:
    """Every MCP tool of a run under its model-facing name. A deferred server's tools are
    offered only once loaded (by a tool search), after the others, in the order loaded."""

    def __init__(self, sessions: Iterable[ServerSession], reserved: Iterable[str]) -> None:
        sessions = list(sessions)
        by_key = {(s.spec.label, t.name): (s, t) for s in sessions for t in s.tools}
        names = build_name_map(by_key, reserved)
        self._tools = {name: BoundTool(name, *by_key[key]) for name, key in names.items()}
        self._deferred = {s.spec.label for s in sessions if s.spec.deferred}
        """Labels of the servers whose tools wait for a search."""
        self._loaded: dict[str, None] = {}  # an ordered set

    def _is_deferred(self, tool: BoundTool) -> bool:
        return tool.server_label in self._deferred

    def get(self, name: str) -> BoundTool | None:
        """The tool the model may call by ``name`` (None if it is not offered)."""
        tool = self._tools.get(name)
        if tool is None or (self._is_deferred(tool) and name not in self._loaded):
            return None
        return tool

    def deferred(self) -> list[BoundTool]:
        """Tools of deferred servers, loaded or not (what a tool search ranks)."""
        return [tool for tool in self._tools.values() if self._is_deferred(tool)]

    def fit(self, room: int) -> dict[str, int]:
        """Defer servers, those with the most tools first, until the tools offered from the
        first turn are at most ``room``; the servers deferred here, with their tool counts."""
        counts: dict[str, int] = {}
        for tool in self._tools.values():
            counts[tool.server_label] = counts.get(tool.server_label, 0) + 1
        eager = {label: n for label, n in counts.items() if label not in self._deferred}
        offered, deferred_now = sum(eager.values()), {}
        for label, count in sorted(eager.items(), key=lambda item: (-item[1], item[0])):
            if offered <= room:
                break
            self._deferred.add(label)
            deferred_now[label] = count
            offered -= count
        return deferred_now

    def load(self, tools: Iterable[BoundTool]) -> None:
        for tool in tools:
            self._loaded.setdefault(tool.name, None)

    def eager_count(self) -> int:
        """How many tools ``eager_tools`` offers (without making them)."""
        return sum(1 for t in self._tools.values() if not self._is_deferred(t))

    def eager_tools(self) -> list[dict[str, Any]]:
        """The tools of servers that are not deferred, offered from the first turn."""
        return [t.model_tool() for t in self._tools.values() if not self._is_deferred(t)]

    def loaded_tools(self, room: int | None = None) -> list[dict[str, Any]]:
        """Deferred tools a search loaded, in the order loaded (only the latest ``room``)."""
        names = list(self._loaded)
        if room is not None:
            names = names[max(0, len(names) - room) :]
        return [self._tools[name].model_tool() for name in names]
