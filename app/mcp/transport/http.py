"""The HTTP layer under every MCP session: httpx2's transport interface (what the ``mcp`` SDK
takes) over aiohttp's connection pool.

The SDK speaks httpx2. Its default transport (httpcore2 and h11) cost 1.45 ms of CPU per tool
call on the bench's server where aiohttp costs 1.05 ms (``docs/performance.md``), and every
call, listing and stream of a session goes through it. Redirects, auth and cookies stay with
the httpx2 client above; this layer moves bytes (a request in; status, headers and a streamed
body out) and reports failures as httpx2's exceptions, with httpx2's timeouts: for getting a
connection, for connecting, and for each read.

It also decodes the body (gzip, deflate, br; aiohttp does it in bounded pieces) and counts
every decoded byte as it streams: a response over ``max_body_bytes`` decoded fails with
``ResponseTooLarge`` at that point, so a compressed bomb (512 MB of JSON in 0.5 MB on the wire)
is never held. A server's standalone GET stream lives for the session: there the bound is on
each event (the bytes since the last blank line), not on the stream.
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
_DECODED_HERE = frozenset({b"content-encoding", b"content-length"})
"""Response headers that no longer describe the body once this layer has decoded it."""
DEFAULT_MAX_BODY_BYTES = 16 * 1024 * 1024


class ResponseTooLarge(httpx2.ReadError):
    """A server's response (or, on a GET stream, one event) passed the decoded-size bound."""


def _as_httpx(exc: BaseException, request: httpx2.Request) -> httpx2.TransportError:
    """An aiohttp failure as the httpx2 exception the SDK and ``app/mcp/sessions/session.py``
    expect."""
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

    def __init__(
        self, response: aiohttp.ClientResponse, request: httpx2.Request, max_bytes: int
    ) -> None:
        self._response = response
        self._request = request
        self._max_bytes = max_bytes
        self._per_event = request.method == "GET"

    async def __aiter__(self) -> AsyncIterator[bytes]:
        counted = 0
        try:
            async for piece in self._response.content.iter_any():
                last = piece.rfind(b"\n\n") if self._per_event else -1
                ended = False  # an event that ends in this piece passed the bound
                if last >= 0:  # an event ends here: it is what is bounded, then the next one
                    ended = counted + piece.find(b"\n\n") > self._max_bytes
                    counted = len(piece) - last - 2
                else:
                    counted += len(piece)
                if ended or counted > self._max_bytes:
                    self._response.close()  # nothing more is read, nothing is kept
                    what = "one event of its stream" if self._per_event else "its response"
                    raise ResponseTooLarge(
                        f"the MCP server sent more than {self._max_bytes} bytes in {what} "
                        "(decoded)",
                        request=self._request,
                    )
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
    ``keepalive_expiry``, whatever their number (at most ``max_connections``).
    ``max_body_bytes``: the decoded-size bound of a response (see the module)."""

    def __init__(
        self,
        *,
        verify: ssl.SSLContext,
        limits: httpx2.Limits,
        resolver: AbstractResolver | None = None,
        max_body_bytes: int = DEFAULT_MAX_BODY_BYTES,
    ) -> None:
        self._verify = verify
        self._limits = limits
        self._resolver = resolver
        self._max_body_bytes = max_body_bytes
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
                auto_decompress=True,  # here, so decoded bytes are counted (_Body)
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
        received = response.raw_headers
        if any(name.lower() == b"content-encoding" for name, _ in received):
            received = tuple((n, v) for n, v in received if n.lower() not in _DECODED_HERE)
        return httpx2.Response(
            response.status,
            headers=list(received),
            stream=_Body(response, request, self._max_body_bytes),
            extensions={"http_version": b"HTTP/1.1"},
        )

    async def aclose(self) -> None:
        if self._session is not None:
            session, self._session = self._session, None
            await session.close()
