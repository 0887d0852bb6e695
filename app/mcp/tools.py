"""MCP tools as the model sees them (OpenAI function tools), and back again."""

from __future__ import annotations

import copy
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import mcp_types as types

from app.mcp.connection import ServerConnection
from app.mcp.naming import build_name_map


def function_schema(tool: types.Tool) -> dict[str, Any]:
    """The tool's input schema as OpenAI function parameters.

    MCP does not require ``properties`` and OpenAI does, so an object schema without them
    gets an empty one.
    """
    schema = copy.deepcopy(tool.input_schema) or {"type": "object"}
    if schema.get("type") == "object":
        schema.setdefault("properties", {})
    return schema


@dataclass(frozen=True, slots=True)
class BoundTool:
    """An MCP tool bound to the open connection that runs it."""

    name: str
    """The model-facing name."""
    connection: ServerConnection
    tool: types.Tool

    @property
    def server_label(self) -> str:
        return self.connection.spec.label

    @property
    def requires_approval(self) -> bool:
        return self.connection.spec.approval.requires_approval(self.tool)

    def model_tool(self) -> dict[str, Any]:
        function: dict[str, Any] = {"name": self.name, "parameters": function_schema(self.tool)}
        if self.tool.description:
            function["description"] = self.tool.description
        return {"type": "function", "function": function}


class Toolset:
    """Every MCP tool of a run under its model-facing name."""

    def __init__(self, connections: Iterable[ServerConnection], reserved: Iterable[str]) -> None:
        by_key = {(c.spec.label, t.name): (c, t) for c in connections for t in c.tools}
        names = build_name_map(by_key, reserved)
        self._tools = {name: BoundTool(name, *by_key[key]) for name, key in names.items()}

    def get(self, name: str) -> BoundTool | None:
        return self._tools.get(name)

    def model_tools(self) -> list[dict[str, Any]]:
        return [tool.model_tool() for tool in self._tools.values()]
