"""Bearer keys to principals. Keys are compared in constant time and never logged."""

from __future__ import annotations

import hmac
from collections.abc import Sequence

from app.config import ApiKeyConfig
from app.errors import Unauthenticated
from app.principal import ANONYMOUS, Principal
from app.url_patterns import UrlPattern


class KeyRing:
    """The configured API keys."""

    def __init__(self, keys: Sequence[ApiKeyConfig], *, allow_anonymous: bool) -> None:
        self._keys = [(k.secret(), k) for k in keys]
        self._allow_anonymous = allow_anonymous

    def authenticate(self, authorization: str | None) -> Principal:
        """The principal for an ``Authorization`` header value."""
        token = None
        if authorization and authorization[:7].lower() == "bearer ":
            token = authorization[7:].strip()
        if token:
            for secret, key in self._keys:
                if secret and hmac.compare_digest(secret.encode(), token.encode()):
                    return Principal(
                        key_id=key.id,
                        models=tuple(key.models),
                        mcp_servers=tuple(key.mcp_servers),
                        allow_server_urls=key.allow_server_urls,
                        server_urls=tuple(UrlPattern.parse(p) for p in key.server_urls),
                        allow_sampling=key.allow_sampling,
                        budget=key.budget,
                    )
        if self._allow_anonymous:
            return ANONYMOUS
        if not token:
            raise Unauthenticated(
                "You didn't provide an API key. Provide it in the "
                "Authorization header as 'Bearer YOUR_KEY'."
            )
        raise Unauthenticated("Incorrect API key provided.")
