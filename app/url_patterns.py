"""Which ``server_url``s a key may name: patterns matched against the parsed URL, never the raw
string (where ``*`` would cross ``/``, ``?`` and ``#``: ``http://*.example.com/*`` matched
``http://127.0.0.1/mcp?x=.example.com/``).

A pattern is ``*`` (any URL) or a URL whose parts are matched separately:

- scheme: exact, or ``*`` (http or https);
- host: a glob over the host alone (``*.example.com``: any subdomain; ``*`` never reaches the
  port or path); compared lowercased, IDNs as punycode;
- port: exact, ``*`` for any, or, when absent, the scheme's default (80, 443);
- path: a glob over the path alone (``/mcp/*``; ``*`` may cross ``/``), absent or ``/*``: any.
  A URL whose path has ``.`` or ``..`` segments (or their encodings) matches no path pattern
  but ``/*``, since servers resolve them differently.

Query and fragment are never part of the match.
"""

from __future__ import annotations

import fnmatch
import re
from dataclasses import dataclass
from urllib.parse import unquote, urlsplit

_DEFAULT_PORTS = {"http": 80, "https": 443}
_DOT_SEGMENT = re.compile(r"(^|/)\.{1,2}(/|$)")


class BadPattern(ValueError):
    """A ``server_urls`` entry that is not ``*`` or a URL pattern."""


@dataclass(frozen=True, slots=True)
class UrlPattern:
    scheme: str
    host: str
    port: str
    """Digits, or ``*``."""
    path: str

    @classmethod
    def parse(cls, pattern: str) -> UrlPattern:
        if pattern.strip() == "*":
            return cls("*", "*", "*", "/*")
        match = re.fullmatch(r"(\*|https?)://([^/:?#]+)(?::(\d+|\*))?(/[^?#]*)?", pattern.strip())
        if match is None:
            raise BadPattern(
                f"server_urls entry {pattern!r}: expected '*' or scheme://host[:port][/path] "
                "(scheme http, https or *; host and path may use *)"
            )
        scheme, host, port, path = match.groups()
        if port is None:
            port = "*" if scheme == "*" else str(_DEFAULT_PORTS[scheme])
        return cls(scheme, host.lower().rstrip("."), port, path or "/*")

    def matches(self, url: str) -> bool:
        if (self.scheme, self.host, self.port, self.path) == ("*", "*", "*", "/*"):
            return True  # any URL: whether it is one at all is the SSRF check's to say (400)
        try:
            parts = urlsplit(url)
            port = parts.port
        except ValueError:
            return False
        scheme, host = parts.scheme.lower(), (parts.hostname or "").rstrip(".")
        if scheme not in _DEFAULT_PORTS or not host:
            return False
        try:
            host = host.encode("idna").decode("ascii")
        except UnicodeError:
            return False
        port = port if port is not None else _DEFAULT_PORTS[scheme]
        path = parts.path or "/"
        if self.path != "/*" and _DOT_SEGMENT.search(unquote(path)):
            return False
        return (
            self.scheme in ("*", scheme)
            and fnmatch.fnmatchcase(host, self.host)
            and self.port in ("*", str(port))
            and fnmatch.fnmatchcase(path, self.path)
        )
