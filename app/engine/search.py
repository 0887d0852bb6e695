"""Server-executed tool search for deferred MCP servers (``defer_loading`` + ``tool_search``).

The model is offered one function, ``tool_search``, whose description names each deferred
server and what it is for; it sends a query (and may name a server). toolbridge ranks the
deferred tools with BM25 over their names, descriptions and parameter names, and loads the best
few: they are offered from the next turn on, after every other tool, so the start of the prompt
stays the same (and cacheable). A continuation replays the conversation's earlier searches
against the same tools, so what was loaded stays loaded.
"""

from __future__ import annotations

import json
import math
import re
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from app.engine.events import ToolCall
from app.llm.client import Message
from app.mcp.tools import BoundTool, Toolset

FUNCTION_NAME = "tool_search"
TOP_K = 5
"""Tools loaded by one search, at most."""
_K1, _B = 1.2, 0.75
"""BM25's usual constants."""
_RELATIVE_CUTOFF = 0.3
"""A tool scoring under this share of the best match is not loaded: a few good tools beat five
where most match only a common word."""
_STOPWORDS = frozenset(
    ["a", "an", "and", "by", "for", "from", "in", "of", "on", "or", "the", "to", "with"]
)
_WORD = re.compile(r"[A-Za-z][a-z]*|[0-9]+|[A-Z]+(?![a-z])")


def _tokens(text: str) -> list[str]:
    """Words, with snake_case, kebab-case and camelCase split, without stopwords."""
    return [w for w in (w.lower() for w in _WORD.findall(text)) if w not in _STOPWORDS]


def _document(tool: BoundTool) -> list[str]:
    schema = tool.tool.input_schema or {}
    properties = schema.get("properties") if isinstance(schema, dict) else None
    parts = [tool.tool.name, tool.tool.name, tool.tool.description or ""]  # the name counts twice
    for name, prop in (properties or {}).items():
        parts.append(str(name))
        if isinstance(prop, dict) and isinstance(prop.get("description"), str):
            parts.append(prop["description"])
    return _tokens(" ".join(parts))


def rank(query: str, tools: Sequence[BoundTool], k: int = TOP_K) -> list[BoundTool]:
    """The ``k`` tools that best match ``query`` (BM25; ties keep the listing order)."""
    documents = [_document(t) for t in tools]
    if not documents:
        return []
    average = sum(len(d) for d in documents) / len(documents) or 1.0
    frequency = Counter(word for d in documents for word in set(d))
    scores = []
    for index, document in enumerate(documents):
        counts, score = Counter(document), 0.0
        for word in set(_tokens(query)):
            if word not in counts:
                continue
            idf = math.log(1 + (len(documents) - frequency[word] + 0.5) / (frequency[word] + 0.5))
            tf = counts[word]
            score += idf * tf * (_K1 + 1) / (tf + _K1 * (1 - _B + _B * len(document) / average))
        if score > 0:
            scores.append((-score, index))
    ranked = sorted(scores)[:k]
    best = -ranked[0][0] if ranked else 0.0
    return [tools[index] for score, index in ranked if -score >= _RELATIVE_CUTOFF * best]


@dataclass(frozen=True, slots=True)
class SearchResult:
    """One search: what the model asked, what was loaded, and the text the model reads."""

    arguments: dict[str, Any]
    loaded: tuple[BoundTool, ...]
    text: str


class ToolSearch:
    """The search over one run's deferred tools."""

    def __init__(self, toolset: Toolset, descriptions: dict[str, str | None]) -> None:
        self._toolset = toolset
        self._descriptions = descriptions
        """Deferred servers' labels and what each is for."""

    @property
    def enabled(self) -> bool:
        return bool(self._descriptions)

    def function(self) -> dict[str, Any]:
        """The function the model calls to search."""
        servers = "\n".join(
            f"- {label}: {description or 'no description'}"
            for label, description in self._descriptions.items()
        )
        return {
            "type": "function",
            "function": {
                "name": FUNCTION_NAME,
                "description": (
                    "Find and load tools of these MCP servers; their tools are not offered "
                    "until a search loads them. Loaded tools can be called from your next "
                    f"step.\n{servers}"
                ),
                "parameters": {
                    "type": "object",
                    "properties": {
                        "query": {
                            "type": "string",
                            "description": "What the tools should do, in a few words.",
                        },
                        "server_label": {
                            "type": "string",
                            "enum": list(self._descriptions),
                            "description": "Search one server only.",
                        },
                    },
                    "required": ["query"],
                },
            },
        }

    def run(self, call: ToolCall) -> SearchResult:
        """Rank, load, and say what was loaded (bad arguments: nothing loaded, said so)."""
        try:
            arguments = json.loads(call.arguments or "{}")
        except json.JSONDecodeError:
            arguments = None
        if not isinstance(arguments, dict) or not isinstance(arguments.get("query"), str):
            text = 'tool_search needs {"query": "..."}; nothing was loaded.'
            return SearchResult({}, (), text)
        label = arguments.get("server_label")
        candidates = [
            t for t in self._toolset.deferred() if label is None or t.server_label == label
        ]
        loaded = tuple(rank(arguments["query"], candidates))
        self._toolset.load(loaded)
        if not loaded:
            return SearchResult(arguments, (), "No tools matched; nothing was loaded.")
        lines = [f"- {t.name}: {t.tool.description or ''}".rstrip() for t in loaded]
        text = "Loaded these tools; you can call them now:\n" + "\n".join(lines)
        return SearchResult(arguments, loaded, text)

    def replay(self, messages: Iterable[Message]) -> None:
        """Load again what the conversation's earlier searches loaded."""
        for message in messages:
            for raw in (
                message.get("tool_calls") or () if message.get("role") == "assistant" else ()
            ):
                function = raw.get("function") if isinstance(raw, dict) else None
                if isinstance(function, dict) and function.get("name") == FUNCTION_NAME:
                    self.run(
                        ToolCall(
                            str(raw.get("id")), FUNCTION_NAME, str(function.get("arguments") or "")
                        )
                    )
