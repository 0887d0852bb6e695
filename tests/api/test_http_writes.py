"""The protocol toolbridge serves with (``app/http_writes.py``): what one step of a response
writes reaches the socket as one write, nothing waits for a later step, nothing is lost when the
connection closes. Over real HTTP, the server in a process of its own, read with a socket."""

from __future__ import annotations

import socket
import subprocess
import sys
import time
from collections.abc import Iterator

import pytest

from app.store.embedded import free_port
from tests.fixtures.waiting import listening, wait_until
from tests.fixtures.writes_server import PAUSE_S

WHOLE = b"5\r\nfirst\r\n6\r\nsecond\r\n4\r\nlast\r\n0\r\n\r\n"


def _serve(*args: str) -> Iterator[int]:
    port = free_port()
    command = [sys.executable, "-m", "tests.fixtures.writes_server", str(port), *args]
    process = subprocess.Popen(command)
    try:
        wait_until(lambda: listening(port), 60, "the pieces server")
        yield port
    finally:
        process.terminate()
        process.wait(10)


@pytest.fixture(scope="module")
def port() -> Iterator[int]:
    yield from _serve()


@pytest.fixture(scope="module")
def plain_port() -> Iterator[int]:
    yield from _serve("plain")


def _segments(port: int, path: str) -> tuple[bytes, int]:
    """The whole answer, and how many TCP segments with data brought it (the kernel's count,
    ``tcpi_data_segs_in`` of ``struct tcp_info``: each write of the server's is one)."""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as connection:
        connection.sendall(b"GET " + path.encode() + b" HTTP/1.1\r\nhost: x\r\n\r\n")
        received = b""
        while not received.endswith(b"0\r\n\r\n"):
            received += connection.recv(65536)
        info = connection.getsockopt(socket.IPPROTO_TCP, socket.TCP_INFO, 160)
    return received, int.from_bytes(info[152:156], sys.byteorder)


def test_what_one_step_writes_arrives_as_one_piece(port: int, plain_port: int) -> None:
    answer, segments = _segments(port, "/whole")
    assert answer.startswith(b"HTTP/1.1 200 OK\r\n"), answer
    assert answer.endswith(WHOLE), answer
    assert segments == 1
    # uvicorn's own protocol, for contrast: a segment for the head, one for each piece
    answer, segments = _segments(plain_port, "/whole")
    assert answer.endswith(WHOLE), answer
    assert segments > 1


def test_nothing_waits_for_a_later_step(port: int) -> None:
    with socket.create_connection(("127.0.0.1", port), timeout=10) as connection:
        connection.sendall(b"GET /paused HTTP/1.1\r\nhost: x\r\n\r\n")
        started, received = time.monotonic(), b""
        while not received.endswith(b"6\r\nsecond\r\n"):
            received += connection.recv(65536)
        assert time.monotonic() - started < PAUSE_S, "the first pieces waited for the last"
        while not received.endswith(b"0\r\n\r\n"):
            received += connection.recv(65536)
    assert received.endswith(WHOLE), received


def test_a_closing_connection_sends_what_was_written_first(port: int) -> None:
    with socket.create_connection(("127.0.0.1", port), timeout=10) as connection:
        connection.sendall(b"GET /whole HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n")
        received = b""
        while piece := connection.recv(65536):  # to the end: the server closes
            received += piece
    assert b"connection: close" in received.lower(), received
    assert received.endswith(WHOLE), received
