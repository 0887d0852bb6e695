"""The HTTP layer under MCP sessions (aiohttp behind httpx2's transport interface), over real
HTTP: what the SDK's httpx2 client sees, timeouts as httpx2's exceptions, and the caller pool
connecting only to the address checked for a host."""

from __future__ import annotations

import gzip
import ssl
from collections.abc import Iterator

import anyio
import httpx2
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

from app.mcp.http import AiohttpTransport
from app.mcp.ssrf import PinnedTransport, PinnedUrl, caller_pool
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
    return Response(gzip.compress(b"unzipped by httpx2"), headers={"content-encoding": "gzip"})


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
            Route("/stalls", stalls),
        ]
    )
    running = ServerThread(app).start()
    yield running
    running.stop()


def client(transport: httpx2.AsyncBaseTransport, read_s: float = 5) -> httpx2.AsyncClient:
    return httpx2.AsyncClient(transport=transport, timeout=httpx2.Timeout(5, read=read_s))


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
            assert (await http.get(f"{server.url}/zipped")).text == "unzipped by httpx2"
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
