"""The HTTP layer under MCP sessions (aiohttp behind httpx2's transport interface), over real
HTTP: what the SDK's httpx2 client sees, timeouts as httpx2's exceptions, and the caller pool
connecting only to the address checked for a host."""

from __future__ import annotations

import gzip
import ssl
import zlib
from collections.abc import Iterator

import anyio
import httpx2
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

from app.mcp.transport.http import AiohttpTransport, Httpx2Wire, ResponseTooLarge, Wire
from app.mcp.transport.ssrf import PinnedTransport, PinnedUrl, caller_pool
from tests.fixtures.servers import ServerThread

LIMITS = httpx2.Limits(max_connections=8, max_keepalive_connections=8)


async def echo(request: Request) -> JSONResponse:
    return JSONResponse(
        {
            "method": request.method,
            "host": request.headers["host"],
            "x-test": request.headers.get("x-test"),
            "body": (await request.body()).decode(),
        }
    )


async def zipped(_: Request) -> Response:
    return Response(gzip.compress(b"unzipped"), headers={"content-encoding": "gzip"})


BOMB_MB = 64


def _bomb() -> bytes:
    """``BOMB_MB`` MB of JSON-ish spaces, gzip-compressed to about 64 KB."""
    squeeze = zlib.compressobj(9, zlib.DEFLATED, 31)  # 31: the gzip container
    chunk = b" " * (1 << 20)
    return b"".join(squeeze.compress(chunk) for _ in range(BOMB_MB)) + squeeze.flush()


BOMB = _bomb()


async def bomb(_: Request) -> Response:
    return Response(BOMB, headers={"content-encoding": "gzip"}, media_type="application/json")


async def events(request: Request) -> StreamingResponse:
    """An SSE stream: many small events, then (``?big=1``) one event larger than the bound."""

    async def body() -> object:
        for index in range(400):
            yield f"data: {index} {'x' * 10_000}\n\n".encode()
        if request.query_params.get("big"):
            yield b"data: " + b"y" * 300_000 + b"\n\n"

    return StreamingResponse(body(), media_type="text/event-stream")  # type: ignore[arg-type]


async def stalls(_: Request) -> StreamingResponse:
    async def body() -> object:
        yield b"first "
        await anyio.sleep(5)
        yield b"never"

    return StreamingResponse(body())  # type: ignore[arg-type]


@pytest.fixture(scope="module")
def server() -> Iterator[ServerThread]:
    app = Starlette(
        routes=[
            Route("/echo", echo, methods=["POST"]),
            Route("/zipped", zipped),
            Route("/bomb", bomb),
            Route("/events", events),
            Route("/stalls", stalls),
        ]
    )
    running = ServerThread(app).start()
    yield running
    running.stop()


def client(wire: Wire, read_s: float = 5) -> httpx2.AsyncClient:
    """An httpx2 client over ``wire``, as a session's is."""
    return httpx2.AsyncClient(transport=Httpx2Wire(wire), timeout=httpx2.Timeout(5, read=read_s))


def test_requests_and_bodies_arrive_as_httpx2_sent_them(server: ServerThread) -> None:
    async def go() -> None:
        pool = AiohttpTransport(verify=ssl.create_default_context(), limits=LIMITS)
        async with client(pool) as http:
            sent = await http.post(
                f"{server.url}/echo", content=b'{"a": 1}', headers={"X-Test": "t"}
            )
            assert sent.json() == {
                "method": "POST",
                "host": f"127.0.0.1:{server.port}",
                "x-test": "t",
                "body": '{"a": 1}',
            }
            zipped = await http.get(f"{server.url}/zipped")
            assert zipped.text == "unzipped"  # decoded here (and counted), not by httpx2
            assert "content-encoding" not in zipped.headers
        await pool.aclose()

    anyio.run(go)


def test_a_compressed_bomb_stops_at_the_decoded_bound(server: ServerThread) -> None:
    """64 MB decoded from 64 KB on the wire: refused once 1 MB is decoded, nothing kept."""
    assert len(BOMB) < 100_000

    async def go() -> None:
        pool = AiohttpTransport(
            verify=ssl.create_default_context(), limits=LIMITS, max_body_bytes=1 << 20
        )
        async with client(pool) as http:
            with pytest.raises(ResponseTooLarge, match="more than 1048576 bytes"):
                await http.get(f"{server.url}/bomb")
            ok = await http.post(f"{server.url}/echo", content=b"after")  # the pool still works
            assert ok.json()["body"] == "after"
        await pool.aclose()

    anyio.run(go)


def test_a_get_stream_is_bounded_per_event(server: ServerThread) -> None:
    """A session's GET stream may carry more than the bound over its life (4 MB of small
    events here, bound 256 KB), but no single event may pass it."""

    async def go() -> None:
        pool = AiohttpTransport(
            verify=ssl.create_default_context(), limits=LIMITS, max_body_bytes=256 * 1024
        )
        async with client(pool) as http:
            whole = await http.get(f"{server.url}/events")
            assert whole.text.count("data: ") == 400 and len(whole.content) > 4_000_000
            with pytest.raises(ResponseTooLarge, match="one event of its stream"):
                await http.get(f"{server.url}/events?big=1")
        await pool.aclose()

    anyio.run(go)


def test_a_stalled_body_is_httpx2s_read_timeout(server: ServerThread) -> None:
    async def go() -> None:
        pool = AiohttpTransport(verify=ssl.create_default_context(), limits=LIMITS)
        async with client(pool, read_s=0.3) as http:
            async with http.stream("GET", f"{server.url}/stalls") as response:
                with pytest.raises(httpx2.ReadTimeout):
                    await response.aread()
            with pytest.raises(httpx2.ConnectError):  # nothing listens on port 9
                await http.get("http://127.0.0.1:9/")
        await pool.aclose()

    anyio.run(go)


def test_the_caller_pool_connects_only_to_the_checked_address(server: ServerThread) -> None:
    """``pinned.invalid`` has no DNS answer: it is reached only because the resolver answers
    with the address checked for it; without a pin, or for another host, nothing connects."""
    pinned = PinnedUrl(host="pinned.invalid", wire_host="pinned.invalid", address="127.0.0.1")

    async def go() -> None:
        pool = caller_pool(verify=ssl.create_default_context(), limits=LIMITS)
        url = f"http://pinned.invalid:{server.port}/echo"
        async with client(PinnedTransport(pool, pinned)) as http:
            answer = (await http.post(url, content=b"x")).json()
            assert answer["host"] == f"pinned.invalid:{server.port}"  # the real name is sent
            with pytest.raises(httpx2.ConnectError, match="not the checked host"):
                await http.post(f"http://other.invalid:{server.port}/echo")
        await pool.aclose()
        fresh = caller_pool(verify=ssl.create_default_context(), limits=LIMITS)
        async with client(fresh) as unpinned:
            with pytest.raises(httpx2.ConnectError, match="was not checked"):
                await unpinned.post(url, content=b"x")
        await fresh.aclose()

    anyio.run(go)
