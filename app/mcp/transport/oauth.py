"""OAuth client credentials for registered MCP servers: the client side of MCP's
``io.modelcontextprotocol/oauth-client-credentials`` extension (SEP-1046), on the ``mcp`` SDK's
own providers (``ClientCredentialsOAuthProvider``, ``PrivateKeyJWTOAuthProvider``).

The SDK does the protocol: on the server's 401 it discovers the Protected Resource Metadata
(RFC 9728, from ``WWW-Authenticate`` or the well-known paths), then the authorization server's
metadata (RFC 8414, with the OpenID and 2025-03-26 fallbacks), checks issuers, picks scopes
(configured, else ``WWW-Authenticate``'s, else ``scopes_supported``), sends the ``resource``
indicator (RFC 8707), authenticates (``client_secret_basic``, ``client_secret_post``, or a
``private_key_jwt`` assertion it signs) and steps up on ``403 insufficient_scope``.

What toolbridge adds: one token per registered server for the whole process. Each session has
its own provider (the SDK's holds a lock for a request's length), all reading and writing one
``SharedTokens``; while no valid token is held, sessions connect one at a time until one has
fetched it (``first_token``), so 50 runs on a cold start cost one token request. A token is
used until ``EXPIRY_MARGIN_S`` before its ``expires_in``, and fetched again on a 401. Tokens
live in this process only (never in Redis, logs, errors or metrics); each replica fetches its
own, which ``toolbridge_mcp_auth_token_requests_total`` counts.
"""

from __future__ import annotations

import re
import time
import warnings
from collections.abc import AsyncGenerator, AsyncIterator, Callable
from contextlib import asynccontextmanager

import anyio
import httpx2
from mcp.client.auth import OAuthClientProvider
from mcp.client.auth.exceptions import OAuthFlowError, OAuthTokenError
from mcp.client.auth.extensions.client_credentials import (
    ClientCredentialsOAuthProvider,
    PrivateKeyJWTOAuthProvider,
    SignedJWTParameters,
)
from mcp.client.extension import ClientExtension
from mcp.shared.auth import OAuthClientInformationFull, OAuthToken
from mcp.shared.exceptions import MCPDeprecationWarning

from app.config import RegisteredServer
from app.mcp.sessions.sdk_internals import fix_token_endpoint
from app.metrics import MCP_AUTH_FAILURES, MCP_AUTH_TOKENS

EXPIRY_MARGIN_S = 30.0
"""A token this close to its expiry is fetched again rather than sent (a tenth of a short
token's life, when that is less)."""


class OAuthClientCredentials(ClientExtension):
    """Declared to a server toolbridge authenticates with client credentials (the extension
    asks a client that uses it to say so)."""

    identifier = "io.modelcontextprotocol/oauth-client-credentials"


EXTENSION = OAuthClientCredentials()


class SharedTokens:
    """The SDK's ``TokenStorage`` for one server, shared by every session of the process."""

    def __init__(self, label: str) -> None:
        self._label = label
        self._token: OAuthToken | None = None
        self._usable_until: float | None = None

    def valid(self) -> bool:
        return self._token is not None and (
            self._usable_until is None or time.time() < self._usable_until
        )

    async def get_tokens(self) -> OAuthToken | None:
        return self._token if self.valid() else None

    async def set_tokens(self, tokens: OAuthToken) -> None:
        self._token = tokens
        life = tokens.expires_in
        if life is None:
            self._usable_until = None
        else:
            self._usable_until = time.time() + life - min(EXPIRY_MARGIN_S, 0.1 * life)
        MCP_AUTH_TOKENS.labels(self._label).inc()

    async def get_client_info(self) -> OAuthClientInformationFull | None:
        return None  # the provider sets its configured client itself

    async def set_client_info(self, client_info: OAuthClientInformationFull) -> None:
        """Nothing to keep: no dynamic registration with client credentials."""


class ServerAuth:
    """How toolbridge authenticates to one registered server (``auth_type: oauth2``)."""

    def __init__(self, server: RegisteredServer) -> None:
        if server.url is None or server.client_id is None:
            raise ValueError(f"MCP server {server.label!r}: oauth2 needs url and client_id")
        self._server, self._url, self._client_id = server, server.url, server.client_id
        self.tokens = SharedTokens(server.label)
        self._cold = anyio.Lock()

    def provider(self, on_failure: Callable[[OAuthFlowError], None]) -> httpx2.Auth:
        """The auth of one session: the SDK's flow over the shared tokens; a failure of the
        flow (which the SDK reports to a call only as a closed connection) is counted and
        goes to ``on_failure`` too."""

        def failed(exc: OAuthFlowError) -> None:
            MCP_AUTH_FAILURES.labels(self._server.label).inc()
            on_failure(exc)

        return _Reporting(self._sdk_provider(), failed)

    def _sdk_provider(self) -> httpx2.Auth:
        server, url, client_id = self._server, self._url, self._client_id
        scope = " ".join(server.scopes) if server.scopes else None
        with warnings.catch_warnings():
            # Without an issuer the SDK warns that the MCP server picks the authorization
            # server; configuration requires issuer or token_url, and token_url pins it.
            warnings.simplefilter("ignore", MCPDeprecationWarning)
            provider: OAuthClientProvider
            if server.token_endpoint_auth_method == "private_key_jwt":
                assert server.private_key is not None
                signing = SignedJWTParameters(
                    issuer=client_id,
                    subject=client_id,
                    signing_key=server.private_key.get_secret_value(),
                    signing_algorithm=server.signing_algorithm,
                )
                provider = PrivateKeyJWTOAuthProvider(
                    url,
                    self.tokens,
                    client_id,
                    signing.create_assertion_provider(),
                    scope=scope,
                    issuer=server.issuer,
                )
            else:
                assert server.client_secret is not None
                provider = ClientCredentialsOAuthProvider(
                    url,
                    self.tokens,
                    client_id,
                    server.client_secret.get_secret_value(),
                    token_endpoint_auth_method=server.token_endpoint_auth_method,
                    scope=scope,
                    issuer=server.issuer,
                )
        if server.token_url:
            fix_token_endpoint(provider, server.token_url)
        return provider

    @asynccontextmanager
    async def first_token(self) -> AsyncIterator[None]:
        """Around connecting a session: while no valid token is held, one session at a time,
        so the first fetches it and the others find it."""
        if self.tokens.valid():
            yield
            return
        async with self._cold:
            yield


class _Reporting(httpx2.Auth):
    """Drives the SDK provider's flow unchanged, telling ``on_failure`` when it fails."""

    def __init__(self, inner: httpx2.Auth, on_failure: Callable[[OAuthFlowError], None]) -> None:
        self._inner = inner
        self._on_failure = on_failure

    async def async_auth_flow(
        self, request: httpx2.Request
    ) -> AsyncGenerator[httpx2.Request, httpx2.Response]:
        flow = self._inner.async_auth_flow(request)
        try:
            outgoing = await flow.__anext__()
            while True:
                response = yield outgoing
                outgoing = await flow.asend(response)
        except StopAsyncIteration:
            return
        except OAuthFlowError as exc:
            self._on_failure(exc)
            raise
        finally:
            await flow.aclose()


_AS_ERROR = re.compile(r'"error"\s*:\s*"([A-Za-z0-9_.-]{1,64})"')
_STATUS = re.compile(r"\((\d{3})\)")


def auth_failure_text(exc: OAuthFlowError) -> str:
    """What the caller may hear of a failed OAuth flow: the authorization server's status and
    ``error`` code, never its body (it may echo what it was sent) or a secret."""
    if not isinstance(exc, OAuthTokenError):
        return f"authorization failed ({type(exc).__name__})"
    said = [f"HTTP {m.group(1)}" for m in [_STATUS.search(str(exc))] if m]
    said += [f"error {m.group(1)}" for m in [_AS_ERROR.search(str(exc))] if m]
    return "authorization failed: the authorization server refused the token request" + (
        f" ({', '.join(said)})" if said else ""
    )


def auth_failure(exc: BaseException) -> str | None:
    """``auth_failure_text`` for the OAuth failure behind ``exc``; None if there is none."""
    while isinstance(exc, BaseExceptionGroup) and exc.exceptions:
        exc = exc.exceptions[0]
    cause: BaseException | None = exc
    while cause is not None and not isinstance(cause, OAuthFlowError):
        cause = cause.__cause__ or cause.__context__
    return None if cause is None else auth_failure_text(cause)
