"""The direct path's connection pool serves every caller: nothing one answer set rides along
with a later request (a raw HTTP server records what arrives; no mocks)."""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator
from contextlib import contextmanager

import anyio

from app.llm.direct import Deployment, DirectClient
from tests.fixtures.raw_http import read_request

_ANSWER = b'{"choices":[{"index":0,"message":{"role":"assistant","content":"ok"}}]}'


@contextmanager
def _recording_server(heads: list[bytes]) -> Iterator[str]:
    """Answers every request on every connection with a completion that sets a cookie, and
    keeps each request's head in ``heads``; its base URL."""
    listener = socket.create_server(("127.0.0.1", 0))
    port = listener.getsockname()[1]

    def serve(connection: socket.socket) -> None:
        with connection:
            pending = b""
            while (request := read_request(connection, pending)) is not None:
                head, pending = request
                heads.append(head)
                connection.sendall(
                    b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\n"
                    b"set-cookie: session=first-caller; Path=/\r\n"
                    b"content-length: %d\r\n\r\n%s" % (len(_ANSWER), _ANSWER)
                )

    def accept() -> None:
        while True:
            try:
                connection, _ = listener.accept()
            except OSError:
                return  # closed: the test is over
            threading.Thread(target=serve, args=(connection,), daemon=True).start()

    threading.Thread(target=accept, daemon=True).start()
    try:
        # A name, not an address: aiohttp keeps no cookies from a bare IP address anyway.
        yield f"http://localhost:{port}/v1"
    finally:
        listener.close()


def test_a_cookie_one_answer_sets_is_not_sent_with_the_next_request() -> None:
    heads: list[bytes] = []

    async def go(base: str) -> None:
        deployment = Deployment(base, "m", {"Content-Type": "application/json"}, 5.0)
        client = DirectClient(num_retries=0)
        try:
            for _ in range(2):
                answer = await client.complete(deployment, "m", {"messages": []})
                assert answer["choices"][0]["message"]["content"] == "ok"
        finally:
            await client.aclose()

    with _recording_server(heads) as base:
        anyio.run(go, base)
    assert len(heads) == 2
    assert all(b"\r\ncookie:" not in head for head in heads), heads
