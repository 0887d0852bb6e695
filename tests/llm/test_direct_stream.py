"""The direct path's reading of a provider's stream, against a raw HTTP server that sends its
events in awkward pieces (no mocks: real sockets, aiohttp underneath)."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import anyio
import pytest

from app.errors import UpstreamModelError
from app.llm.direct import Deployment, DirectClient
from tests.fixtures.raw_http import read_request


@contextmanager
def _serve_once(pieces: list[bytes]) -> Iterator[str]:
    """A server that answers one request with a chunked body sent in ``pieces``, a pause
    between them so that each arrives in a read of its own; its base URL."""
    listener = socket.create_server(("127.0.0.1", 0))
    port = listener.getsockname()[1]

    def answer() -> None:
        connection, _ = listener.accept()
        with connection:
            if read_request(connection) is None:
                return  # the client went away
            connection.sendall(
                b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\n"
                b"transfer-encoding: chunked\r\n\r\n"
            )
            for piece in pieces:
                connection.sendall(b"%x\r\n%s\r\n" % (len(piece), piece))
                time.sleep(0.02)
            connection.sendall(b"0\r\n\r\n")

    thread = threading.Thread(target=answer, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{port}/v1"
    thread.join(5)
    listener.close()


def _chunks(pieces: list[bytes]) -> list[dict[str, Any]]:
    async def go(base: str) -> list[dict[str, Any]]:
        deployment = Deployment(base, "m", {"Content-Type": "application/json"}, 5.0)
        client = DirectClient(num_retries=0)
        try:
            return [c async for c in client.stream(deployment, "m", {"messages": []})]
        finally:
            await client.aclose()

    with _serve_once(pieces) as base:
        return anyio.run(go, base)


def _event(text: str) -> bytes:
    return b'data: {"choices":[{"index":0,"delta":{"content":"%s"}}]}' % text.encode()


def test_lines_split_across_reads_and_any_line_ending_are_read_whole() -> None:
    """An event cut mid-line, ``\\r\\n`` and ``\\r`` endings, comments and event names, and a
    last line with no newline at all: every chunk arrives once, whole, in order."""
    first, second, third = _event("a"), _event("b"), _event("c")
    pieces = [
        b": a comment\r\n\r\n" + first[:10],
        first[10:] + b"\r\n\r\nevent: delta\r\n" + second + b"\r\r",
        third,  # no newline at all: the body's end ends the line
    ]
    chunks = _chunks(pieces)
    assert [c["choices"][0]["delta"]["content"] for c in chunks] == ["a", "b", "c"]


def test_an_error_event_in_the_stream_fails_the_call() -> None:
    pieces = [_event("a") + b"\n\n", b'data: {"error": {"message": "overloaded"}}\n\n']
    with pytest.raises(UpstreamModelError, match="overloaded"):
        _chunks(pieces)
