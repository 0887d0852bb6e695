"""Process-wide MCP client resources: the HTTP pools, the shared caches, and SDK clients.

Sessions are kept warm between runs of one caller (``app/mcp/sessions/pool.py``) and ride
pooled transports (``app/mcp/transport/http.py``: aiohttp under the SDK's httpx2 client), so TCP
and TLS set-up is paid once per server, not once per request:
one pool for operator-registered servers, and one for the servers callers name by URL, which
connects only to addresses the SSRF guard checked.
"""

from __future__ import annotations

import logging
import re
import ssl
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import certifi
import httpx2
import mcp_types as types
from mcp import Client, StdioServerParameters
from mcp.client.caching import CacheConfig
from mcp.client.sse import sse_client
from mcp.client.streamable_http import streamable_http_client

from app.limits import KeyLimits
from app.mcp.features.callbacks import ServerCallbacks
from app.mcp.servers import ServerSpec
from app.mcp.sessions.eras import Attempt, sdk_mode, uses_sse
from app.mcp.transport.http import Httpx2Wire, Incoming, Outgoing, Wire, as_httpx2
from app.mcp.transport.oauth import EXTENSION as OAUTH_EXTENSION
from app.mcp.transport.oauth import ServerAuth
from app.mcp.transport.ssrf import PinnedTransport
from app.mcp.transport.stdio import stdio_transport
from app.store.mcp_cache import EraStore, RedisResponseCacheStore

CLIENT_INFO = types.Implementation(name="toolbridge", version="0.1.0")


def tls_context(extra_ca_file: Path | None) -> ssl.SSLContext:
    """TLS for MCP servers: the public CAs (certifi), plus the operator's CA bundle if given
    (for servers with certificates from a private CA)."""
    context = ssl.create_default_context(cafile=certifi.where())
    if extra_ca_file is not None:
        context.load_verify_locations(cafile=str(extra_ca_file))
    return context


_CHALLENGE_PARAM = re.compile(r'(resource_metadata|scope)\s*=\s*"([^"]*)"')


@dataclass
class TransportWatch:
    """What one session's HTTP exchanges showed that the SDK does not report: the
    ``WWW-Authenticate`` challenges of 401 answers (the SDK reports a 401 only as a generic
    error), and whether the server answered 404 to our session id (it forgot the session)."""

    challenges: list[dict[str, str]] = field(default_factory=list)
    session_gone: bool = False
    failure: Exception | None = None
    """What really failed when the SDK reports only a closed connection: a response cut at
    the decoded-size bound, or our OAuth flow with the server."""

    def failed(self, exc: Exception) -> None:
        self.failure = exc

    def take_failure(self) -> Exception | None:
        taken, self.failure = self.failure, None
        return taken


class _Watching:
    """A session's ``Wire``: notes in its watch what the server's answers show."""

    def __init__(self, inner: Wire, watch: TransportWatch) -> None:
        self._inner = inner
        self._watch = watch

    async def send(self, request: Outgoing) -> Incoming:
        incoming = await self._inner.send(request)
        if incoming.status == 401:
            header = incoming.headers.get("www-authenticate", "")
            self._watch.challenges.append(dict(_CHALLENGE_PARAM.findall(header)))
        elif incoming.status == 404 and request.has_header("mcp-session-id"):
            self._watch.session_gone = True
        incoming.failed = self._watch.failed
        return incoming


class Answer(Protocol):
    """An answer to a direct call's POST, its body still streaming."""

    status: int

    def header(self, name: str) -> str:
        """The header's value; "" when absent."""
        ...

    async def read(self) -> bytes: ...

    def events(self) -> AsyncIterator[httpx2.ServerSentEvent]:
        """The body as server-sent events."""
        ...


class _WireAnswer:
    def __init__(self, incoming: Incoming, sent: Outgoing) -> None:
        self._incoming = incoming
        self._sent = sent
        self.status = incoming.status

    def header(self, name: str) -> str:
        return self._incoming.headers.get(name, "")

    async def read(self) -> bytes:
        return await self._incoming.read()

    def events(self) -> AsyncIterator[httpx2.ServerSentEvent]:
        # Rare enough (a call that reports progress) to read through httpx2's event parser.
        request = httpx2.Request(self._sent.method, self._sent.url, headers=self._sent.headers)
        return aiter(httpx2.EventSource(as_httpx2(self._incoming, request)))


class _ClientAnswer:
    def __init__(self, response: httpx2.Response) -> None:
        self._response = response
        self.status = response.status_code

    def header(self, name: str) -> str:
        return self._response.headers.get(name, "")

    async def read(self) -> bytes:
        return await self._response.aread()

    def events(self) -> AsyncIterator[httpx2.ServerSentEvent]:
        return aiter(httpx2.EventSource(self._response))


class HttpRoute:
    """Where a Streamable HTTP session's requests go, and how: what a direct call
    (``sessions/direct_calls.py``) sends its POST with. The session's own HTTP client and wire,
    so its headers, SSRF pin, size bound and watch all apply; the POST goes straight to the
    wire (httpx2's client layers, merging, auth, cookies and redirects, were 5 % of the CPU of a
    run; without its request and response objects too, a tool run takes 0.93x to 0.98x the
    CPU, ``docs/performance.md``) unless the client has auth or cookies to apply, then through
    the client."""

    def __init__(self, url: str, http: httpx2.AsyncClient, wire: Wire) -> None:
        self.url = url
        self._http = http
        self._wire = wire
        self._host = httpx2.URL(url).host
        self._headers = dict(http.headers)  # the client's defaults and the server's headers
        self._timeout = http.timeout.as_dict()

    @asynccontextmanager
    async def post(self, content: bytes, headers: dict[str, str]) -> AsyncIterator[Answer]:
        """POST ``content`` with ``headers`` (over the client's); the answer, still streaming."""
        if self._http.auth is not None or self._http.cookies:
            async with self._http.stream("POST", self.url, content=content, headers=headers) as r:
                yield _ClientAnswer(r)
            return
        sent = Outgoing(
            "POST",
            self.url,
            self._host,
            list({**self._headers, **headers}.items()),
            content,
            self._timeout,
        )
        incoming = await self._wire.send(sent)
        try:
            yield _WireAnswer(incoming, sent)
        finally:
            incoming.close()


@dataclass(frozen=True, slots=True)
class ListingBounds:
    """How large one server's ``tools/list`` may be, all pages together: past either bound the
    server fails (424) instead of being held in memory."""

    max_tools: int = 50_000
    max_bytes: int = 32 * 1024 * 1024
    """The pages' JSON, as the SDK parsed it."""


class McpClients:
    """Makes SDK clients for servers, over the process's pools and caches."""

    def __init__(
        self,
        *,
        pool: Wire,
        caller_pool: Wire,
        cache_store: RedisResponseCacheStore,
        eras: EraStore,
        default_ttl_s: int,
        share_public: bool,
        stderr_level: int = logging.INFO,
        key_limits: KeyLimits | None = None,
        auths: dict[str, ServerAuth] | None = None,
        listing_bounds: ListingBounds | None = None,
        direct_calls: bool = True,
    ) -> None:
        self._pool = pool
        self._caller_pool = caller_pool
        """Caller-supplied servers' pool: connects only to checked addresses (``ssrf``)."""
        self._stderr_level = stderr_level
        self._cache_store = cache_store
        self.eras = eras
        self.default_ttl_s = default_ttl_s
        """A tool list's cache life when the server gives none."""
        self._share_public = share_public
        self._key_limits = key_limits
        self._auths = auths or {}
        """Registered servers toolbridge authenticates to (OAuth), by label."""
        self.listing_bounds = listing_bounds or ListingBounds()
        """How large a server's tool list may be (pages followed up to it)."""
        self._direct_calls = direct_calls

    def _wire_for(self, spec: ServerSpec, watch: TransportWatch) -> Wire:
        """One session's wire: the registered pool, or the checked one; watched."""
        wire: Wire = self._pool
        if spec.pinned is not None:
            slots = None
            if self._key_limits is not None and spec.owner is not None:
                slots = self._key_limits.connection_slots(spec.owner)
            wire = PinnedTransport(self._caller_pool, spec.pinned, slots)
        return _Watching(wire, watch)

    def _http_factory(
        self, wire: Wire, spec: ServerSpec, watch: TransportWatch
    ) -> Callable[..., httpx2.AsyncClient]:
        """Makes the per-session HTTP clients over ``wire``."""
        server_auth = self.auth_for(spec)

        def make(
            headers: dict[str, str] | None = None, timeout: Any = None, auth: Any = None
        ) -> httpx2.AsyncClient:
            timeout = timeout or httpx2.Timeout(30.0, read=300.0)
            if auth is None and server_auth is not None:
                auth = server_auth.provider(watch.failed)
            return httpx2.AsyncClient(
                headers=headers, timeout=timeout, auth=auth, transport=Httpx2Wire(wire)
            )

        return make

    def auth_for(self, spec: ServerSpec) -> ServerAuth | None:
        """How toolbridge authenticates to ``spec`` itself, if it does (registered only)."""
        return self._auths.get(spec.label) if spec.oauth and spec.registered else None

    def client(
        self,
        spec: ServerSpec,
        attempt: Attempt,
        callbacks: ServerCallbacks,
        watch: TransportWatch,
    ) -> tuple[Client, HttpRoute | None]:
        """An unopened SDK client for one attempt at ``spec``, and for Streamable HTTP the route
        a direct call takes (None when direct calls are off); what its HTTP exchanges show is
        noted in ``watch``."""
        server: Any
        route: HttpRoute | None = None
        if spec.transport == "stdio":
            params = StdioServerParameters(
                command=spec.command[0], args=list(spec.command[1:]), env=dict(spec.env) or None
            )
            server = stdio_transport(params, spec.label, self._stderr_level)
        elif uses_sse(spec, attempt):
            assert spec.url is not None
            server = sse_client(
                spec.url,
                headers=dict(spec.headers),
                httpx_client_factory=self._http_factory(self._wire_for(spec, watch), spec, watch),
            )
        else:
            assert spec.url is not None
            wire = self._wire_for(spec, watch)
            http = self._http_factory(wire, spec, watch)(dict(spec.headers))
            server = streamable_http_client(spec.url, http_client=http)
            if self._direct_calls:
                route = HttpRoute(spec.url, http, wire)
        mode, prior = sdk_mode(spec, attempt)
        cache = CacheConfig(
            store=self._cache_store,
            partition=spec.credential_hash(),
            # A server may offer other tools to a client that declares other capabilities.
            target_id=f"{spec.target()}#{callbacks.declaration()}",
            default_ttl_ms=self.default_ttl_s * 1000,
            share_public=self._share_public,
        )
        options = callbacks.client_options()
        if self.auth_for(spec) is not None:  # the extension asks its users to declare it
            options["extensions"] = [*options["extensions"], OAUTH_EXTENSION]
        client = Client(
            server,
            mode=mode,
            prior_discover=prior,
            cache=cache,
            client_info=CLIENT_INFO,
            **options,
        )
        return client, route
