"""Server-executed tool search for deferred MCP servers (``defer_loading`` + ``tool_search``).

The model is offered one function, ``tool_search``, whose description names each deferred
server and what it is for; it sends a query (and may name a server). toolbridge ranks the
deferred tools with BM25 over their names, descriptions and parameter names, and loads the best
few: they are offered from the next turn on, after every other tool, so the start of the prompt
stays the same (and cacheable). A continuation replays the conversation's earlier searches
against the same tools, so what was loaded stays loaded.
"""

from __future__ import annotations

import heapq
import json
import math
import re
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import anyio

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
MAX_QUERY_CHARS = 512
"""Of a query, the part searched."""
MAX_PER_MESSAGE = 4
"""Searches one model step may run (and one earlier message may replay); more are refused."""
MAX_PER_RUN = 16
"""Searches one run may run; and, apart, earlier searches a continuation replays (the latest)."""
_THREAD_ABOVE = 2_000
"""Candidates above which the index is built off the event loop (about 5 us a tool)."""


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


class _Index:
    """BM25 over a set of tools, built once per run and set of candidates: a query costs only
    the postings of its words (a 20,000-tool server is searched in milliseconds)."""

    def __init__(self, tools: Sequence[BoundTool]) -> None:
        self.tools = tools
        documents = [_document(t) for t in tools]
        self.lengths = [len(d) for d in documents]
        self.average = sum(self.lengths) / len(documents) if documents else 1.0
        self.postings: dict[str, list[tuple[int, int]]] = {}
        for index, document in enumerate(documents):
            for word, count in Counter(document).items():
                self.postings.setdefault(word, []).append((index, count))

    def rank(self, query: str, k: int = TOP_K) -> list[BoundTool]:
        """The ``k`` tools that best match ``query`` (ties keep the listing order)."""
        total, average = len(self.tools), self.average or 1.0
        scores: dict[int, float] = {}
        for word in set(_tokens(query[:MAX_QUERY_CHARS])):
            postings = self.postings.get(word, ())
            idf = math.log(1 + (total - len(postings) + 0.5) / (len(postings) + 0.5))
            for index, tf in postings:
                norm = _K1 * (1 - _B + _B * self.lengths[index] / average)
                scores[index] = scores.get(index, 0.0) + idf * tf * (_K1 + 1) / (tf + norm)
        ranked = heapq.nsmallest(k, ((-score, index) for index, score in scores.items()))
        best = -ranked[0][0] if ranked else 0.0
        return [self.tools[i] for score, i in ranked if -score >= _RELATIVE_CUTOFF * best]


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
        self._indexes: dict[str | None, _Index] = {}
        """Per server label searched (None: every deferred server)."""
        self._searches = 0

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

    async def _index(self, label: str | None) -> _Index:
        if (index := self._indexes.get(label)) is None:
            candidates = [
                t for t in self._toolset.deferred() if label is None or t.server_label == label
            ]
            if len(candidates) > _THREAD_ABOVE:
                index = await anyio.to_thread.run_sync(_Index, candidates)
            else:
                index = _Index(candidates)
            self._indexes[label] = index
        return index

    async def run(self, call: ToolCall, *, replayed: bool = False) -> SearchResult:
        """Rank, load, and say what was loaded (bad arguments: nothing loaded, said so)."""
        try:
            arguments = json.loads(call.arguments or "{}")
        except json.JSONDecodeError:
            arguments = None
        if not isinstance(arguments, dict) or not isinstance(arguments.get("query"), str):
            text = 'tool_search needs {"query": "..."}; nothing was loaded.'
            return SearchResult({}, (), text)
        if not replayed:
            self._searches += 1
            if self._searches > MAX_PER_RUN:
                text = f"This run has searched {MAX_PER_RUN} times, its limit; nothing was loaded."
                return SearchResult(arguments, (), text)
        label = arguments.get("server_label")
        index = await self._index(label if isinstance(label, str) else None)
        loaded = tuple(index.rank(arguments["query"]))
        self._toolset.load(loaded)
        if not loaded:
            return SearchResult(arguments, (), "No tools matched; nothing was loaded.")
        lines = [f"- {t.name}: {t.tool.description or ''}".rstrip() for t in loaded]
        text = "Loaded these tools; you can call them now:\n" + "\n".join(lines)
        return SearchResult(arguments, loaded, text)

    async def replay(self, messages: Iterable[Message]) -> None:
        """Load again what the conversation's earlier searches loaded: at most
        ``MAX_PER_MESSAGE`` of a message and the latest ``MAX_PER_RUN`` in all (a history
        full of searches costs no more than that)."""
        if not self.enabled:
            return  # nothing is deferred: there is nothing a search could load
        calls: list[ToolCall] = []
        for message in messages:
            if message.get("role") != "assistant":
                continue
            found = [
                raw["function"]
                for raw in message.get("tool_calls") or ()
                if isinstance(raw, dict)
                and isinstance(raw.get("function"), dict)
                and raw["function"].get("name") == FUNCTION_NAME
            ]
            calls += [
                ToolCall("replayed", FUNCTION_NAME, str(f.get("arguments") or ""))
                for f in found[:MAX_PER_MESSAGE]
            ]
        for call in calls[-MAX_PER_RUN:]:
            await self.run(call, replayed=True)
