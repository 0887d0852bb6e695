"""Key URL patterns match the parsed URL part by part, never the raw string."""

from __future__ import annotations

import pytest

from app.config import ApiKeyConfig
from app.url_patterns import BadPattern, UrlPattern


@pytest.mark.parametrize(
    ("pattern", "url", "allowed"),
    [
        ("*", "http://anything.example:9/x?y#z", True),
        ("http://*.example.com/*", "http://mcp.example.com/mcp", True),
        ("http://*.example.com/*", "http://a.b.example.com/x/y", True),
        # The attack: the glob once crossed '/', '?' and '#' of the raw string.
        ("http://*.example.com/*", "http://127.0.0.1:8080/mcp?x=.example.com/", False),
        ("http://*.example.com/*", "http://127.0.0.1/#.example.com/", False),
        ("http://*.example.com/*", "http://evil.com/.example.com/mcp", False),
        ("http://*.example.com/*", "http://example.com.evil.com/mcp", False),
        ("http://*.example.com/*", "http://user@127.0.0.1/@x.example.com/", False),
        # Port: the scheme's default unless the pattern says otherwise.
        ("http://*.example.com/*", "http://mcp.example.com:8080/mcp", False),
        ("http://*.example.com:*/*", "http://mcp.example.com:8080/mcp", True),
        ("https://mcp.example.com", "https://mcp.example.com:443/mcp", True),
        ("https://mcp.example.com", "http://mcp.example.com/mcp", False),
        ("*://mcp.example.com/*", "http://mcp.example.com:8000/mcp", True),
        # Path: a glob over the path alone; dot segments never pass a path prefix.
        ("https://mcp.example.com/team-a/*", "https://mcp.example.com/team-a/mcp", True),
        ("https://mcp.example.com/team-a/*", "https://mcp.example.com/team-b/mcp", False),
        ("https://mcp.example.com/team-a/*", "https://mcp.example.com/team-a/../admin", False),
        ("https://mcp.example.com/team-a/*", "https://mcp.example.com/team-a/%2e%2e/admin", False),
        ("https://MCP.Example.com/*", "https://mcp.EXAMPLE.com./mcp", True),
        ("https://*.example.com/*", "https://bücher.example.com/mcp", True),  # punycode host
        ("https://*.example.com/*", "ftp://mcp.example.com/mcp", False),
    ],
)
def test_patterns_match_the_parsed_url(pattern: str, url: str, allowed: bool) -> None:
    assert UrlPattern.parse(pattern).matches(url) is allowed


@pytest.mark.parametrize("pattern", ["mcp.example.com", "ftp://x/*", "http://", "https://a:b/"])
def test_a_bad_pattern_stops_start_up_naming_it(pattern: str) -> None:
    with pytest.raises(BadPattern, match="server_urls entry"):
        UrlPattern.parse(pattern)
    with pytest.raises(ValueError, match="server_urls entry"):
        ApiKeyConfig(id="k", key="sk-x", server_urls=[pattern])  # type: ignore[arg-type]
