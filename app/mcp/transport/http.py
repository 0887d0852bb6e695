"""The HTTP layer under every MCP session: aiohttp's connection pool, and httpx2's transport
interface over it (what the ``mcp`` SDK takes).

The SDK speaks httpx2. Its default transport (httpcore2 and h11) cost 1.45 ms of CPU per tool
call on the bench's server where aiohttp costs 1.05 ms (``docs/performance.md``), and every
call, listing and stream of a session goes through it. Redirects, auth and cookies stay with
the httpx2 client above; this layer moves bytes (a request in; status, headers and a streamed
body out) and reports failures as httpx2's exceptions, with httpx2's timeouts: for getting a
connection, for connecting, and for each read.

The layers under httpx2 (this pool, the SSRF pin, a session's watch: each a ``Wire``) pass an
``Outgoing`` request down and an ``Incoming`` response up, not httpx2's request and response:
a direct tool call (``sessions/direct_calls.py``) sends on them as they are: building
httpx2's objects for it, and reading through them, cost about half again what aiohttp's own
work on the call did (sampled: 3.6 % of a chat run against 7.5 %). ``Httpx2Wire`` turns a
``Wire`` into the httpx2 transport the SDK's client is given.

It also decodes the body (gzip, deflate, br; aiohttp does it in bounded pieces) and counts
every decoded byte as it streams: a response over ``max_body_bytes`` decoded fails with
``ResponseTooLarge`` at that point, so a compressed bomb (512 MB of JSON in 0.5 MB on the wire)
is never held. A server's standalone GET stream lives for the session: there the bound is on
each event (the bytes since the last blank line), not on the stream.
"""

from __future__ import annotations

import ssl
from collections.abc import AsyncIterator, Callable, Mapping
from dataclasses import dataclass
from functools import lru_cache
from typing import Protocol

import aiohttp
import httpx2
from aiohttp.abc import AbstractResolver
from multidict import CIMultiDictProxy
from yarl import URL

_LEFT_TO_AIOHTTP = frozenset({"content-length", "transfer-encoding"})
"""Framing headers: aiohttp frames the body it sends itself."""
_DECODED_HERE = frozenset({b"content-encoding", b"content-length"})
"""Response headers that no longer describe the body once this layer has decoded it."""
DEFAULT_MAX_BODY_BYTES = 16 * 1024 * 1024


class ResponseTooLarge(httpx2.ReadError):
    """A server's response (or, on a GET stream, one event) passed the decoded-size bound."""


def _as_httpx(exc: BaseException) -> httpx2.TransportError:
    """An aiohttp failure as the httpx2 exception the SDK and ``app/mcp/sessions/session.py``
    expect."""
    message = str(exc) or type(exc).__name__
    if isinstance(exc, aiohttp.ConnectionTimeoutError):
        return httpx2.ConnectTimeout(message)
    if isinstance(exc, TimeoutError):
        return httpx2.ReadTimeout(message)
    if isinstance(exc, aiohttp.ClientConnectorError):
        return httpx2.ConnectError(f"{message}: {exc.os_error}")
    return httpx2.ReadError(message)


@dataclass(frozen=True, slots=True)
class Outgoing:
    """A request, as the layers under httpx2 take it."""

    method: str
    url: str
    """As it goes on the wire (percent-encoded)."""
    host: str
    """The URL's host, as ``httpx2.URL.host`` gives it."""
    headers: list[tuple[str, str]]
    content: bytes
    timeout: Mapping[str, float | None]
    """httpx2's: ``pool``, ``connect`` and ``read`` (per read), in seconds."""

    def has_header(self, name: str) -> bool:
        return any(header.lower() == name for header, _ in self.headers)


@lru_cache(maxsize=64)
def _timeout(
    pool: float | None, connect: float | None, read: float | None
) -> aiohttp.ClientTimeout:
    """httpx2's timeouts as aiohttp's (made once per value: they are immutable)."""
    return aiohttp.ClientTimeout(total=None, connect=pool, sock_connect=connect, sock_read=read)


class Incoming:
    """A response whose body is still arriving: decoded, and counted against the bound.

    ``close`` gives the connection back (or drops it, when the body was not read to its end),
    then calls what the layers above asked for (``on_close``); ``failed``, if set, hears of a
    ``ResponseTooLarge`` before it is raised."""

    __slots__ = (
        "status",
        "headers",
        "failed",
        "_response",
        "_max_bytes",
        "_per_event",
        "_count",
        "_closing",
    )

    def __init__(self, response: aiohttp.ClientResponse, max_bytes: int, per_event: bool) -> None:
        self.status = response.status
        self.headers: CIMultiDictProxy[str] = response.headers
        """As received (``content-encoding`` included: ``raw_headers`` leaves it out)."""
        self.failed: Callable[[Exception], None] | None = None
        self._response = response
        self._max_bytes = max_bytes
        self._per_event = per_event
        self._count = 0
        self._closing: list[Callable[[], None]] = []

    def raw_headers(self) -> list[tuple[bytes, bytes]]:
        """The headers as they describe the decoded body."""
        received = self._response.raw_headers
        if any(name.lower() == b"content-encoding" for name, _ in received):
            return [(n, v) for n, v in received if n.lower() not in _DECODED_HERE]
        return list(received)

    async def next_piece(self) -> bytes:
        """The body's next decoded bytes; b"" at its end."""
        try:
            piece = await self._response.content.readany()
        except (TimeoutError, aiohttp.ClientError) as exc:
            raise _as_httpx(exc) from exc
        last = piece.rfind(b"\n\n") if self._per_event else -1
        ended = False  # an event that ends in this piece passed the bound
        if last >= 0:  # an event ends here: it is what is bounded, then the next one
            ended = self._count + piece.find(b"\n\n") > self._max_bytes
            self._count = len(piece) - last - 2
        else:
            self._count += len(piece)
        if ended or self._count > self._max_bytes:
            self._response.close()  # nothing more is read, nothing is kept
            what = "one event of its stream" if self._per_event else "its response"
            too_large = ResponseTooLarge(
                f"the MCP server sent more than {self._max_bytes} bytes in {what} (decoded)"
            )
            if self.failed is not None:
                self.failed(too_large)
            raise too_large
        return piece

    async def read(self) -> bytes:
        """The whole body."""
        pieces = []
        while piece := await self.next_piece():
            pieces.append(piece)
        return b"".join(pieces)

    def on_close(self, callback: Callable[[], None]) -> None:
        self._closing.append(callback)

    def close(self) -> None:
        """Once; later calls do nothing."""
        self._response.release()
        closing, self._closing = self._closing, []
        for callback in closing:
            callback()


class Wire(Protocol):
    """A layer under httpx2: sends an ``Outgoing``, answers with the ``Incoming`` (to close)."""

    async def send(self, request: Outgoing) -> Incoming: ...


class AiohttpTransport:
    """A process-wide pool of connections to MCP servers (a ``Wire``).

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
                auto_decompress=True,  # here, so decoded bytes are counted (Incoming)
                cookie_jar=aiohttp.DummyCookieJar(),  # httpx2 keeps the cookies
            )
        return self._session

    async def send(self, request: Outgoing) -> Incoming:
        limits = request.timeout
        timeout = _timeout(limits.get("pool"), limits.get("connect"), limits.get("read"))
        headers = [
            (name, value) for name, value in request.headers if name.lower() not in _LEFT_TO_AIOHTTP
        ]
        try:
            response = await self._client().request(
                request.method,
                URL(request.url, encoded=True),
                headers=headers,
                data=request.content,
                timeout=timeout,
                allow_redirects=False,  # httpx2 decides (the SDK: same origin only)
            )
        except (TimeoutError, aiohttp.ClientError) as exc:
            raise _as_httpx(exc) from exc
        return Incoming(response, self._max_body_bytes, per_event=request.method == "GET")

    async def aclose(self) -> None:
        if self._session is not None:
            session, self._session = self._session, None
            await session.close()


class _Body(httpx2.AsyncByteStream):
    """An ``Incoming`` body, as httpx2 reads one; failures name httpx2's request."""

    def __init__(self, incoming: Incoming, request: httpx2.Request) -> None:
        self._incoming = incoming
        self._request = request

    async def __aiter__(self) -> AsyncIterator[bytes]:
        try:
            while piece := await self._incoming.next_piece():
                yield piece
        except httpx2.RequestError as exc:
            exc.request = self._request
            raise

    async def aclose(self) -> None:
        self._incoming.close()


def as_httpx2(incoming: Incoming, request: httpx2.Request) -> httpx2.Response:
    """``incoming`` as httpx2's response to ``request``, its body still streaming."""
    response = httpx2.Response(
        incoming.status,
        headers=incoming.raw_headers(),
        stream=_Body(incoming, request),
        extensions={"http_version": b"HTTP/1.1"},
    )
    response.request = request
    return response


class Httpx2Wire(httpx2.AsyncBaseTransport):
    """A ``Wire`` as the httpx2 transport of one session's client. Closing the client leaves
    the wire open: its pool belongs to the process."""

    def __init__(self, wire: Wire) -> None:
        self.wire = wire

    async def handle_async_request(self, request: httpx2.Request) -> httpx2.Response:
        sent = Outgoing(
            request.method,
            str(request.url),
            request.url.host,
            request.headers.multi_items(),
            await request.aread(),
            request.extensions.get("timeout", {}),
        )
        try:
            incoming = await self.wire.send(sent)
        except httpx2.RequestError as exc:
            exc.request = request
            raise
        return as_httpx2(incoming, request)

    async def aclose(self) -> None:
        """The wire's pool belongs to the process, not to this session."""
