"""The Redis every replica shares: one node or a Redis Cluster, plain or TLS (``rediss://``).

Keys are laid out so that every command that touches several keys, and every script, touches
one hash slot (a hash tag in braces), which a cluster requires: all budget keys share the tag
``{<prefix>budget}`` (a reservation must check a key's, a run's and a registered server's
scopes atomically, and a server's scope is shared by every key), and a key's hidden turns share
``{<key id>}``. Everything else is one key per command.
"""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path
from typing import Any

import hiredis
from redis.asyncio import BlockingConnectionPool, Redis
from redis.asyncio.cluster import ClusterPipeline, RedisCluster
from redis.connection import HiredisRespSerializer
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import RedisError
from redis.exceptions import TimeoutError as RedisTimeoutError

logger = logging.getLogger(__name__)

RedisClient = Redis | RedisCluster
"""What the stores are given; both speak the same commands for what toolbridge uses."""


POOL_WAIT_S = 10.0
"""How long a command waits for one of the pool's connections before it fails (503)."""


def connect(
    url: str,
    *,
    cluster: bool = False,
    ca_file: Path | None = None,
    max_connections: int = 512,
) -> RedisClient:
    """A client for ``url`` (any node of a cluster, when ``cluster``); ``ca_file`` verifies a
    ``rediss://`` server with a private CA.

    At most ``max_connections`` per Redis node; a command beyond them waits for a free one, up
    to ``POOL_WAIT_S`` (redis-py's default pool has 100 and fails the 101st at once: a burst of
    a few hundred runs answered 503). On a cluster, ``WaitingCluster`` waits instead."""
    options: dict[str, Any] = {}
    if ca_file is not None:
        options["ssl_ca_certs"] = str(ca_file)
    if cluster:
        client = WaitingCluster.from_url(url, max_connections=max_connections, **options)
        # Private API (redis-py 8.1, pinned): the cluster takes no connection class; its nodes
        # are made from these keyword arguments (the startup nodes already were).
        for node in client.nodes_manager.startup_nodes.values():
            node.connection_class = lean_commands(node.connection_class)
        kwargs = client.nodes_manager.connection_kwargs
        kwargs["connection_class"] = lean_commands(kwargs["connection_class"])
        return client
    pool = WaitingPool.from_url(
        url, max_connections=max_connections, timeout=POOL_WAIT_S, **options
    )
    pool.connection_class = lean_commands(pool.connection_class)
    return Redis.from_pool(pool)


_HIREDIS = HiredisRespSerializer()


def lean_commands(connection_class: type[Any]) -> type[Any]:
    """``connection_class``, with two costs of every command cut (Redis sees the same bytes):

    - **Packing.** redis-py's asyncio client packs a command in Python, argument by argument:
      about 25 µs for a budget script's 30 arguments. Its synchronous client packs with hiredis
      when it is installed; so does this, and a command's arguments go to hiredis as they are
      (redis-py's serializer first checks each one in Python) unless hiredis refuses one: then
      redis-py's serializer converts it, or refuses it as redis-py does.
    - **The write's timeout.** redis-py bounds a command's write by ``socket_timeout`` with
      ``asyncio.wait_for``, which on Python 3.11 makes a task of every write (about 2 % of a
      run's CPU, sampled). Here the same bound is ``asyncio.timeout`` around redis-py's own
      write, which makes no task; a write past it fails as redis-py's does (the connection
      dropped, ``redis.exceptions.TimeoutError``). Private behaviour (redis-py 8.1, pinned):
      redis-py writes without ``wait_for`` while ``socket_timeout`` is unset, so it is unset
      for the write (the connection is this command's alone meanwhile) and set again after.

    Tested in ``tests/store/test_stores.py`` (same bytes; a stalled write times out)."""

    class LeanCommands(connection_class):  # type: ignore[misc]
        socket_timeout: float | None

        def pack_command(self, *args: Any) -> list[bytes]:
            first = args[0]
            if isinstance(first, str) and " " not in first:  # not a name of two words
                try:
                    return [hiredis.pack_command(args)]
                except TypeError:
                    pass  # a bytearray or memoryview: converted, or refused, below
            packed: list[bytes] = _HIREDIS.pack(*args)
            return packed

        async def send_packed_command(self, command: Any, check_health: bool = True) -> None:
            bound = self.socket_timeout
            if not bound:
                await super().send_packed_command(command, check_health)
                return
            self.socket_timeout = None  # redis-py then writes without wait_for
            try:
                async with asyncio.timeout(bound):
                    await super().send_packed_command(command, check_health)
            except TimeoutError:  # asyncio's; redis-py dropped the connection on the way out
                raise RedisTimeoutError("Timeout writing to socket") from None
            finally:
                self.socket_timeout = bound

    LeanCommands.__name__ = f"Lean{connection_class.__name__}"
    return LeanCommands


class WaitingPool(BlockingConnectionPool):
    """redis-py's blocking pool, with a fast path while nobody waits for a connection.

    Its own ``get_connection`` and ``release`` take an ``asyncio.Condition`` and a timeout, and
    record pool metrics nobody reads here, on every command: about 30 of the 87 µs of CPU a
    script call cost (measured, one node, 16 at once). With a connection free, one is taken and
    given back directly; only a command that has to wait, and the releases while one waits,
    go through the blocking pool's own path, which wakes the waiters. The direct path skips the
    pool's "connection released" event, which only redis-py's re-authenticating credential
    providers listen for (toolbridge configures none).

    Private API: ``_available_connections`` and ``_in_use_connections`` (redis-py 8.1, pinned;
    tests/store/test_stores.py checks the pool waits, times out and keeps no connection)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._waiting = 0

    async def get_connection(self, *args: Any, **options: Any) -> Any:
        if self._waiting or not self._available_connections:
            self._waiting += 1
            try:
                return await super().get_connection()  # type: ignore[no-untyped-call]
            finally:
                self._waiting -= 1
        connection = self._available_connections.pop()
        self._in_use_connections.add(connection)
        try:
            await self.ensure_connection(connection)
        except BaseException:
            await self.release(connection)
            raise
        return connection

    async def release(self, connection: Any) -> None:
        if self._waiting:
            await super().release(connection)  # wakes a waiter
            return
        self._in_use_connections.remove(connection)
        if connection.should_reconnect():
            await connection.disconnect()
        self._available_connections.append(connection)


class WaitingCluster(RedisCluster):
    """redis-py's cluster client, whose commands beyond ``max_connections`` in flight wait for
    one to finish (up to ``POOL_WAIT_S``), as the one-node pool's wait for a connection. A
    cluster node's pool in redis-py cannot wait: a command past its bound fails at once
    (``MaxConnectionsError``), as 1,488 of a burst of 2,000 script calls to one node did.
    Commands and pipelines are counted alike: a pipeline takes one connection per node at
    most, so no node is asked for more than the bound."""

    def __init__(self, *, max_connections: int = 100, **kwargs: Any) -> None:
        super().__init__(max_connections=max_connections, **kwargs)
        self.in_flight = asyncio.Semaphore(max_connections)

    async def turn(self) -> None:
        """Wait for a command's turn (release ``in_flight`` after it)."""
        if not self.in_flight.locked():  # free: taken at once, no timer armed
            await self.in_flight.acquire()
            return
        try:
            async with asyncio.timeout(POOL_WAIT_S):
                await self.in_flight.acquire()
        except TimeoutError:
            raise RedisConnectionError("No connection available.") from None

    async def execute_command(self, *args: Any, **kwargs: Any) -> Any:
        await self.turn()
        try:
            return await super().execute_command(*args, **kwargs)
        finally:
            self.in_flight.release()

    def pipeline(
        self, transaction: Any | None = None, shard_hint: Any | None = None
    ) -> ClusterPipeline:
        if shard_hint:  # refused as redis-py refuses it
            return super().pipeline(transaction, shard_hint)
        return _WaitingPipeline(self, transaction)  # type: ignore[abstract]  # as redis-py makes it


class _WaitingPipeline(ClusterPipeline):
    """A ``WaitingCluster``'s pipeline: it waits for its turn as one command."""

    def __init__(self, client: WaitingCluster, transaction: Any | None) -> None:
        super().__init__(client, transaction)
        self._waiting_cluster = client

    async def execute(self, raise_on_error: bool = True, allow_redirections: bool = True) -> Any:
        await self._waiting_cluster.turn()
        try:
            return await super().execute(raise_on_error, allow_redirections)
        finally:
            self._waiting_cluster.in_flight.release()


async def warm_up(redis: RedisClient) -> None:
    """Learn a cluster's slot map now. Left to the first commands, many concurrent ones race in
    redis-py's async cluster client (connections used before they are connected: seen with 50
    concurrent budget reservations on a fresh client). A cluster that does not answer yet is
    learned on first use instead."""
    if isinstance(redis, RedisCluster):
        try:
            await redis.initialize()
        except RedisError as exc:
            logger.warning("Redis Cluster not reachable at start-up: %s", type(exc).__name__)


async def health(redis: RedisClient) -> dict[str, Any]:
    """What ``/readyz`` reports: raises if Redis does not answer; a cluster's state and size."""
    await redis.ping()
    if not isinstance(redis, RedisCluster):
        return {"redis": "ok"}
    info = await redis.cluster_info()
    state = info.get("cluster_state") if isinstance(info, dict) else None
    masters = sum(1 for node in redis.get_nodes() if node.server_type == "primary")
    return {
        "redis": "ok" if state == "ok" else f"cluster {state}",
        "redis_cluster": {"state": state, "primaries": masters},
    }
