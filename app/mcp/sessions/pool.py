"""Warm MCP sessions, kept between runs and leased to one run at a time.

Opening a session costs a 2025-11-25 server four HTTP requests before the first call
(initialize, initialized, the GET stream, and DELETE afterwards), a stdio server a new process
(0.6-2 s), and any server a fresh SDK client. So every session lives here, in the process's
task group rather than a run's, and a run that ends cleanly gives its sessions back for the
next run with the same key: the caller's API key, the server, the credentials sent and what we
declare to it. Nothing crosses keys or credentials, and since a session serves one run at a
time, what its server asks for (sampling) is answered for, and charged to, exactly that run.

A session is not given back when anything went wrong on it (a failed call, a timeout, a run
cut short); idle sessions are closed after ``idle_s``, off any request's critical path.
"""

from __future__ import annotations

import hashlib
import logging
import math
from collections import OrderedDict
from dataclasses import dataclass, field
from types import TracebackType

import anyio
import mcp_types as types
from anyio.abc import TaskGroup, TaskStatus
from mcp import Client

from app.mcp.failures import describe_failure
from app.mcp.features.callbacks import ServerCallbacks
from app.mcp.servers import ServerSpec
from app.mcp.transport.clients import HttpRoute, TransportWatch
from app.metrics import POOLED_SESSIONS

logger = logging.getLogger(__name__)

_IDLE, _LEASED = POOLED_SESSIONS.labels("idle"), POOLED_SESSIONS.labels("leased")
"""Found once: ``labels`` takes a lock per call, and a run leases and gives back."""

_CLOSE_TIMEOUT_S = 5.0
"""A server that hangs on session teardown cannot hold anything open longer."""
LISTING_REUSE_S = 10.0
"""How long a warm session reuses the tool list it last saw (at most the cache's TTL) instead of
reading the shared cache again: a server's ``tools/list_changed`` on this session drops it at
once; one seen by another replica reaches this one within this bound."""


def pool_key(spec: ServerSpec, owner: str, declaration: str) -> str:
    """Which sessions may serve a run: same caller key, server, credentials, declaration (and,
    for a caller's URL, the address checked for it)."""
    pinned = spec.pinned.address if spec.pinned is not None else ""
    env = sorted(spec.env.items())
    credentials = spec.credential_hash()
    material = repr((owner, spec.transport, spec.target(), pinned, env, credentials, declaration))
    return hashlib.sha256(material.encode()).hexdigest()


@dataclass(eq=False)
class Lease:
    """One open session and what is known about its health."""

    key: str
    client: Client
    callbacks: ServerCallbacks
    watch: TransportWatch
    route: HttpRoute | None = None
    """Streamable HTTP: where a direct call's POST goes (``app/mcp/sessions/direct_calls.py``)."""
    close: anyio.Event = field(default_factory=anyio.Event)
    ended: bool = False
    """The session's task is over (the transport failed or the server went away)."""
    reused: bool = False
    """It served an earlier run: it may have gone stale meanwhile."""
    fit: bool = True
    """False once anything went wrong on it: it is closed, never given to another run."""
    idle_since: float = 0.0
    listing: tuple[float, list[types.Tool]] | None = None
    """When the server's tools were last listed on this session, and the list (unfiltered)."""

    def recent_listing(self, max_age_s: float) -> list[types.Tool] | None:
        """The tools last listed here, if recent and the server has not said they changed."""
        if self.listing is None or self.callbacks.tools_changed:
            return None
        listed_at, tools = self.listing
        return tools if anyio.current_time() - listed_at < max_age_s else None

    def remember_listing(self, tools: list[types.Tool]) -> None:
        self.callbacks.tools_changed = False
        self.listing = (anyio.current_time(), tools)

    @property
    def usable(self) -> bool:
        return self.fit and not (self.ended or self.watch.session_gone or self.close.is_set())

    def drop(self) -> None:
        """Close it now, whoever holds it."""
        self.fit = False
        self.close.set()


class SessionPool:
    """The process's MCP sessions; leaving it closes them all."""

    def __init__(self, *, idle_s: float, max_idle: int, max_idle_per_server: int) -> None:
        self._idle_s = idle_s
        self._max_idle = max_idle
        self._max_idle_per_server = max_idle_per_server
        self._idle: OrderedDict[Lease, None] = OrderedDict()
        """Oldest first."""
        self._leased: set[Lease] = set()
        self._tg: TaskGroup | None = None

    async def __aenter__(self) -> SessionPool:
        self._tg = anyio.create_task_group()
        await self._tg.__aenter__()
        self._tg.start_soon(self._reap)
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        assert self._tg is not None
        for lease in [*self._idle, *self._leased]:
            lease.close.set()
        self._idle.clear()
        self._tg.cancel_scope.cancel()  # the reaper; sessions close shielded, within bounds
        await self._tg.__aexit__(exc_type, exc, tb)

    def take(self, key: str) -> Lease | None:
        """The most recently used idle session for ``key``, now leased; None when there is none."""
        for lease in reversed(self._idle):
            if lease.key != key:
                continue
            del self._idle[lease]
            if not lease.usable:
                lease.drop()
                continue
            lease.reused = True
            self._leased.add(lease)
            self._count()
            return lease
        return None

    async def open(
        self,
        key: str,
        client: Client,
        callbacks: ServerCallbacks,
        watch: TransportWatch,
        *,
        route: HttpRoute | None = None,
        label: str,
        timeout_s: float,
    ) -> Lease:
        """Open ``client`` in the pool's task group and lease it (connected, not yet listed)."""
        assert self._tg is not None, "SessionPool must be entered"
        lease = Lease(key, client, callbacks, watch, route)
        self._leased.add(lease)
        try:
            await self._tg.start(self._keep_open, lease, label, timeout_s)
        except BaseException:
            self.give_back(lease, reusable=False)
            raise
        return lease

    def give_back(self, lease: Lease, *, reusable: bool) -> None:
        """The run is done with ``lease``: kept warm for the next run, or closed."""
        self._leased.discard(lease)
        lease.callbacks.unbind()
        if not (reusable and lease.usable) or self._max_idle == 0:
            lease.close.set()
            self._count()
            return
        same = [idle for idle in self._idle if idle.key == lease.key]
        if len(same) >= self._max_idle_per_server:
            self._evict(same[0])
        if len(self._idle) >= self._max_idle:
            self._evict(next(iter(self._idle)))
        lease.idle_since = anyio.current_time()
        self._idle[lease] = None
        self._count()

    def _evict(self, lease: Lease) -> None:
        del self._idle[lease]
        lease.drop()

    def _count(self) -> None:
        _IDLE.set(len(self._idle))
        _LEASED.set(len(self._leased))

    async def _reap(self) -> None:
        """Close sessions idle for longer than ``idle_s`` (and any whose transport ended)."""
        interval = max(0.05, min(self._idle_s / 4, 5.0))
        while True:
            await anyio.sleep(interval)
            now = anyio.current_time()
            for lease in list(self._idle):
                if not lease.usable or now - lease.idle_since >= self._idle_s:
                    self._evict(lease)
            self._count()

    async def _keep_open(
        self,
        lease: Lease,
        label: str,
        timeout_s: float,
        *,
        task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED,
    ) -> None:
        """Open the session, hand it over, keep it until ``close`` is set, then close it here.

        Shielded: when a run is cancelled (its client hung up), the session must outlive the
        cancellation long enough to tell the server (``notifications/cancelled`` on a
        2025-11-25 session) and to close cleanly. Deadlines bound both phases.
        """
        started = False
        with anyio.CancelScope(deadline=anyio.current_time() + timeout_s, shield=True) as scope:
            try:
                async with lease.client:
                    scope.deadline = math.inf
                    task_status.started()
                    started = True
                    await lease.close.wait()
                    scope.deadline = anyio.current_time() + _CLOSE_TIMEOUT_S
            except Exception as exc:
                if not started:
                    raise
                logger.info(
                    "MCP session closed with an error: server=%s reason=%s",
                    label,
                    describe_failure(exc),
                )
            finally:
                lease.ended = True
        if not started:
            raise TimeoutError(f"connecting took longer than {timeout_s:g}s")
