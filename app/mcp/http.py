"""The HTTP layer under every MCP session: httpx2's transport interface (what the ``mcp`` SDK
takes) over aiohttp's connection pool.

The SDK speaks httpx2. Its default transport (httpcore2 and h11) cost 1.45 ms of CPU per tool
call on the bench's server where aiohttp costs 1.05 ms (``docs/performance.md``), and every
call, listing and stream of a session goes through it. Redirects, auth, cookies and content
decoding stay with the httpx2 client above; this layer only moves bytes (a request in; status,
headers and a streamed body out) and reports failures as httpx2's exceptions, with httpx2's
timeouts: for getting a connection, for connecting, and for each read.
"""

from __future__ import annotations

import ssl
from collections.abc import AsyncIterator

import aiohttp
import httpx2
from aiohttp.abc import AbstractResolver
from yarl import URL

_LEFT_TO_AIOHTTP = frozenset({"content-length", "transfer-encoding"})
"""Framing headers: aiohttp frames the body it sends itself."""


def _as_httpx(exc: BaseException, request: httpx2.Request) -> httpx2.TransportError:
    """An aiohttp failure as the httpx2 exception the SDK and ``app/mcp/session.py`` expect."""
    message = str(exc) or type(exc).__name__
    if isinstance(exc, aiohttp.ConnectionTimeoutError):
        return httpx2.ConnectTimeout(message, request=request)
    if isinstance(exc, TimeoutError):
        return httpx2.ReadTimeout(message, request=request)
    if isinstance(exc, aiohttp.ClientConnectorError):
        return httpx2.ConnectError(f"{message}: {exc.os_error}", request=request)
    return httpx2.ReadError(message, request=request)


class _Body(httpx2.AsyncByteStream):
    """A response body as it arrives; closing it gives the connection back (or drops it, when
    the body was not read to its end)."""

    def __init__(self, response: aiohttp.ClientResponse, request: httpx2.Request) -> None:
        self._response = response
        self._request = request

    async def __aiter__(self) -> AsyncIterator[bytes]:
        try:
            async for piece in self._response.content.iter_any():
                yield piece
        except (TimeoutError, aiohttp.ClientError) as exc:
            raise _as_httpx(exc, self._request) from exc

    async def aclose(self) -> None:
        self._response.release()


class AiohttpTransport(httpx2.AsyncBaseTransport):
    """A process-wide pool of connections to MCP servers.

    ``resolver``: where a hostname connects to; given, every hostname goes through it (no DNS
    cache, so it is asked on every new connection, in the task of the request). Of ``limits``,
    ``max_keepalive_connections`` has no aiohttp counterpart: an idle connection is kept until
    ``keepalive_expiry``, whatever their number (at most ``max_connections``)."""

    def __init__(
        self,
        *,
        verify: ssl.SSLContext,
        limits: httpx2.Limits,
        resolver: AbstractResolver | None = None,
    ) -> None:
        self._verify = verify
        self._limits = limits
        self._resolver = resolver
        self._session: aiohttp.ClientSession | None = None

    def _client(self) -> aiohttp.ClientSession:
        """Made on first use, in the event loop that serves."""
        if self._session is None:
            connector = aiohttp.TCPConnector(
                ssl=self._verify,
                limit=self._limits.max_connections or 0,
                keepalive_timeout=self._limits.keepalive_expiry or 5.0,
                resolver=self._resolver,
                use_dns_cache=self._resolver is None,
            )
            self._session = aiohttp.ClientSession(
                connector=connector,
                auto_decompress=False,  # httpx2 decodes, by the headers it is given
                cookie_jar=aiohttp.DummyCookieJar(),  # httpx2 keeps the cookies
            )
        return self._session

    async def handle_async_request(self, request: httpx2.Request) -> httpx2.Response:
        limits = request.extensions.get("timeout", {})
        timeout = aiohttp.ClientTimeout(
            total=None,
            connect=limits.get("pool"),
            sock_connect=limits.get("connect"),
            sock_read=limits.get("read"),
        )
        headers = [
            (name, value)
            for name, value in request.headers.multi_items()
            if name.lower() not in _LEFT_TO_AIOHTTP
        ]
        try:
            response = await self._client().request(
                request.method,
                URL(str(request.url), encoded=True),
                headers=headers,
                data=await request.aread(),
                timeout=timeout,
                allow_redirects=False,  # httpx2 decides (the SDK: same origin only)
            )
        except (TimeoutError, aiohttp.ClientError) as exc:
            raise _as_httpx(exc, request) from exc
        return httpx2.Response(
            response.status,
            headers=list(response.raw_headers),
            stream=_Body(response, request),
            extensions={"http_version": b"HTTP/1.1"},
        )

    async def aclose(self) -> None:
        if self._session is not None:
            session, self._session = self._session, None
            await session.close()
