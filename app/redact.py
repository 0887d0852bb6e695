"""Secrets that ride inside URLs: a query's values and userinfo are sent to the server they
belong to, and never logged, echoed or stored."""

from __future__ import annotations

import re

REDACTED = "REDACTED"
_URL = re.compile(r"(?P<scheme>[a-zA-Z][a-zA-Z0-9+.-]*://)(?P<rest>[^\s\"'<>]*)")


def _redact_query(query: str) -> str:
    parts = []
    for part in query.split("&"):
        name, equals, _ = part.partition("=")
        parts.append(f"{name}={REDACTED}" if equals else (REDACTED if part else part))
    return "&".join(parts)


def redact_url(url: str) -> str:
    """``url`` with every query value and any userinfo replaced (names and the rest kept)."""
    match = _URL.fullmatch(url)
    if match is None:
        return REDACTED  # not a URL this can take apart: nothing of it is shown (fail closed)
    rest, fragment_mark, fragment = match["rest"].partition("#")
    authority_and_path, question, query = rest.partition("?")
    authority, slash, path = authority_and_path.partition("/")
    if "@" in authority:
        authority = f"{REDACTED}@{authority.rpartition('@')[2]}"
    redacted = f"{match['scheme']}{authority}{slash}{path}"
    if question:
        redacted += f"?{_redact_query(query)}"
    return redacted + fragment_mark + fragment


def redact_urls(text: str) -> str:
    """Every URL in ``text`` redacted (for log lines and error texts from libraries)."""
    return _URL.sub(lambda m: redact_url(m[0]), text)
