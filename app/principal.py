"""Who is calling: the resolved API key, known to every layer of a run."""

from __future__ import annotations

import fnmatch
from dataclasses import dataclass, field

from app.config import KeyBudget
from app.url_patterns import UrlPattern


@dataclass(frozen=True, slots=True, kw_only=True)
class Principal:
    """A caller, resolved from its bearer key."""

    key_id: str
    """Stable id from config; used in logs and stored data instead of the key."""
    models: tuple[str, ...] = ("*",)
    """Model names (glob patterns) this caller may use."""
    mcp_servers: tuple[str, ...] = ("*",)
    """Labels (glob patterns) of registered MCP servers this caller may use."""
    allow_server_urls: bool = True
    """Whether this caller may name MCP servers by URL."""
    server_urls: tuple[UrlPattern, ...] = (UrlPattern.parse("*"),)
    """The URLs this caller may name, matched part by part (``app/url_patterns.py``)."""
    allow_sampling: bool = False
    """Whether servers this caller names by URL may sample our models on its budget."""
    budget: KeyBudget = field(default_factory=KeyBudget)

    def may_use_model(self, name: str) -> bool:
        return any(fnmatch.fnmatchcase(name, pattern) for pattern in self.models)

    def may_use_server(self, label: str) -> bool:
        return any(fnmatch.fnmatchcase(label, pattern) for pattern in self.mcp_servers)

    def may_use_url(self, url: str) -> bool:
        return self.allow_server_urls and any(pattern.matches(url) for pattern in self.server_urls)


ANONYMOUS = Principal(key_id="anonymous")
"""The caller in open mode (``allow_anonymous``)."""
