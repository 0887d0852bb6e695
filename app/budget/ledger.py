"""The budget ledger: reserve before a model call, settle after, release on failure.

Every model call, the run's own turns and MCP servers' sampling alike, first reserves what it
may cost in every scope that applies (the caller's key in total, per day and per month,
a registered server's sampling, the run itself) in one atomic step, a Lua script, so replicas
racing for the last dollar cannot both win. The reservation also decides how many output
tokens the call may produce (it is sent with that limit; a provider that ignores the limit is
the one way spend can pass it), fairly, so that one call does not take what the key's other
calls in flight or about to start need:

- while what is left pays for ``plenty`` calls of the full limit (the caller's ``max_tokens``,
  else ``default_max_tokens``), the call gets the full limit;
- with less left, it gets what it is likely to need (the caller's ``max_tokens``, else the
  typical output), or, when even that cannot be paid, what is left, down to a minimum;
- below that minimum, or short of its input, it is refused.
After the call the hold is settled to the real cost; on error or cancellation it is released.
Every hold carries its own expiry, so the hold of a replica that dies mid-call lapses by
itself and the money comes back.

Redis layout per scope: ``spent`` (a float), ``holds`` (hash: hold id -> amount) and ``exp``
(sorted set: hold id -> expiry time).
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

import anyio

from app.errors import BudgetExceeded, StoreUnavailable
from app.ids import run_scoped_id
from app.metrics import HOLDS, HOLDS_IN_FLIGHT, OVERRUNS, REFUSALS, SPEND, series
from app.store.connect import RedisClient
from app.store.errors import store_errors

logger = logging.getLogger(__name__)

_HOLDS = {
    outcome: HOLDS.labels(outcome) for outcome in ("reserved", "refused", "settled", "released")
}
"""Each outcome's counter, found once: ``labels`` takes a lock per call, several per run."""

UNLIMITED = math.inf
ANSWERED_S = 1.0
"""How recently a budget script must have been answered for a call without a limit to hold
nothing (``Ledger.reserve``)."""
_LUA_UNLIMITED = 1e300
"""Lua's ``tonumber`` knows no "inf"."""

_PURGE_AND_SUM = """
local function held(holds, exp, now)
  local dead = redis.call('ZRANGEBYSCORE', exp, '-inf', now)
  for _, id in ipairs(dead) do redis.call('HDEL', holds, id) end
  redis.call('ZREMRANGEBYSCORE', exp, '-inf', now)
  local sum = 0
  for _, v in ipairs(redis.call('HVALS', holds)) do sum = sum + tonumber(v) end
  return sum
end
"""

_SETTLE_ONE = """
-- A hold's settlement in the first n scopes: charged only where the hold was still there, so a
-- settlement sent again (a cluster client retries a command after a connection error) is not
-- charged twice. (A hold outlives the model call that made it: hold_ttl_s is above the model
-- timeout.)
local function settle(id, cost, n)
  for i = 1, n do
    local held = redis.call('HDEL', KEYS[3 * i - 1], id)
    redis.call('ZREM', KEYS[3 * i], id)
    if held == 1 and tonumber(cost) > 0 then
      redis.call('INCRBYFLOAT', KEYS[3 * i - 2], cost)
    end
  end
end
"""

RESERVE = (
    _PURGE_AND_SUM
    + _SETTLE_ONE
    + """
-- KEYS: spent, holds, exp per scope. ARGV: now, id, expires_at, input_usd, usd_per_output_token,
-- max_tokens, need_tokens, min_tokens, plenty, then limit and ttl per scope (ttl 0: keep), then
-- id and cost of each earlier hold in the same scopes to settle first (refused or not).
-- The grant: max_tokens while the tightest scope pays for `plenty` such calls; else need_tokens,
-- or what the scope can pay when that is less; fewer than min_tokens (or not even the input) is
-- a refusal. Returns {0, tokens, amount as a string}, or {the 1-based index of the tightest
-- scope, 0, what it has left as a string}.
local now, id, expires = tonumber(ARGV[1]), ARGV[2], ARGV[3]
local input, per_token = tonumber(ARGV[4]), tonumber(ARGV[5])
local want, need, least = tonumber(ARGV[6]), tonumber(ARGV[7]), tonumber(ARGV[8])
local plenty = tonumber(ARGV[9])
local n = #KEYS / 3
for j = 10 + 2 * n, #ARGV, 2 do settle(ARGV[j], ARGV[j + 1], n) end
local room, tightest = nil, 1
for i = 1, n do
  local limit = tonumber(ARGV[8 + 2 * i])
  local spent = tonumber(redis.call('GET', KEYS[3 * i - 2]) or '0')
  local left = limit - spent - held(KEYS[3 * i - 1], KEYS[3 * i], now)
  if room == nil or left < room then room, tightest = left, i end
end
local tokens = want
if per_token > 0 then
  local affordable = math.floor((room - input) / per_token)
  if affordable < want * plenty then tokens = math.min(need, affordable) end
end
if input > room or tokens < least then return {tightest, 0, tostring(math.max(room, 0))} end
local amount = input + tokens * per_token
for i = 1, n do
  redis.call('HSET', KEYS[3 * i - 1], id, amount)
  redis.call('ZADD', KEYS[3 * i], expires, id)
  local ttl = tonumber(ARGV[9 + 2 * i])
  if ttl > 0 then
    for k = 3 * i - 2, 3 * i do redis.call('EXPIRE', KEYS[k], ttl) end
  end
end
return {0, tokens, tostring(amount)}
"""
)

SETTLE = (
    _SETTLE_ONE
    + """
-- KEYS: spent, holds, exp per scope (n scopes), then one marker per unreserved call.
-- ARGV: n, the markers' ttl, m, then each scope's ttl (0: keep), then id and cost of m holds
-- (cost 0 and release: drop the hold only), then the cost of each unreserved call, in the
-- markers' order. An unreserved call is charged once: its marker, set with it, says it was.
-- A scope charged here gets its ttl, as a hold gives it: a run may have held nothing.
local n, ttl, m = tonumber(ARGV[1]), ARGV[2], tonumber(ARGV[3])
local holds_at = 4 + n
for j = 0, m - 1 do settle(ARGV[holds_at + 2 * j], ARGV[holds_at + 1 + 2 * j], n) end
local charge = 0
for k = 3 * n + 1, #KEYS do
  local cost = tonumber(ARGV[holds_at + 2 * m + k - 3 * n - 1])
  if cost > 0 and redis.call('SET', KEYS[k], 1, 'NX', 'EX', ttl) then charge = charge + cost end
end
if charge > 0 then
  for i = 1, n do
    redis.call('INCRBYFLOAT', KEYS[3 * i - 2], charge)
    local keep = tonumber(ARGV[3 + i])
    if keep > 0 then redis.call('EXPIRE', KEYS[3 * i - 2], keep) end
  end
end
return 0
"""
)

STATUS = (
    _PURGE_AND_SUM
    + """
-- KEYS: spent, holds, exp per scope. ARGV: now. Returns spent, held and the number of holds
-- per scope, as strings.
local out = {}
for i = 1, #KEYS / 3 do
  table.insert(out, redis.call('GET', KEYS[3 * i - 2]) or '0')
  table.insert(out, tostring(held(KEYS[3 * i - 1], KEYS[3 * i], tonumber(ARGV[1]))))
  table.insert(out, tostring(redis.call('HLEN', KEYS[3 * i - 1])))
end
return out
"""
)


@dataclass(frozen=True, slots=True)
class Scope:
    """One budget: a name, a limit in USD and how long its record lives."""

    name: str
    """e.g. ``key:team-a:day:2026-11-23``, ``server:docs``, ``run:…``."""
    limit_usd: float = UNLIMITED
    ttl_s: int = 0
    """0: kept; a period's or a run's record expires after it is over."""


@dataclass(frozen=True, slots=True)
class ScopeStatus:
    """A scope's spend and holds at one moment."""

    scope: Scope
    spent_usd: float
    held_usd: float
    holds: int = 0
    """Calls in flight holding part of this scope."""

    @property
    def remaining_usd(self) -> float:
        return max(0.0, self.scope.limit_usd - self.spent_usd - self.held_usd)


@dataclass(frozen=True, slots=True)
class Estimate:
    """What a model call may cost: its input, and each output token it is allowed.

    A reservation grants the call ``max_tokens`` while the budget is plentiful, else
    ``need_tokens`` or what is left (see the module); fewer than ``min_tokens`` is refused."""

    input_usd: float
    usd_per_output_token: float = 0.0
    max_tokens: int = 0
    """The full limit: the caller's ``max_tokens``, else the configured default."""
    need_tokens: int | None = None
    """What the call is likely to need, granted when the budget is tight (None: max_tokens)."""
    min_tokens: int = 0
    plenty: int = 0
    """The full limit is granted while what is left pays for this many such calls (0: always)."""

    @property
    def worst_usd(self) -> float:
        return self.input_usd + self.max_tokens * self.usd_per_output_token


@dataclass
class Hold:
    """A reservation; set ``cost_usd`` to the real cost before it is settled."""

    id: str
    scopes: tuple[Scope, ...]
    amount_usd: float
    max_tokens: int = 0
    """Output tokens the hold pays for."""
    capped: bool = False
    """A limited scope pays for priced output: the call must be sent with ``max_tokens``."""
    cost_usd: float | None = field(default=None)
    reserved: bool = True
    """Held in Redis. A call without a limit may not be: it rides (on its run's first hold, or
    on Redis having just answered: see ``Ledger.reserve``) and is charged when the run
    settles."""

    @property
    def limited(self) -> bool:
        """A scope it is held in has a limit (its settlement frees room someone may need)."""
        return any(scope.limit_usd != UNLIMITED for scope in self.scopes)

    def check_output(self, model: str, completion_tokens: int) -> None:
        """A provider that produced more than it was allowed is charged in full: say so loudly,
        since it is the one way spend can pass a limit."""
        if self.capped and completion_tokens > self.max_tokens:
            OVERRUNS.labels(model).inc()
            logger.error(
                "model produced more output than its max_tokens; charged in full, so spend "
                "may pass a budget limit: model=%s max_tokens=%d completion_tokens=%d",
                model,
                self.max_tokens,
                completion_tokens,
            )


def key_id_of(scopes: Sequence[Scope]) -> str:
    """The API key id the scopes belong to (its ``key:<id>:total`` scope), for metrics."""
    for scope in scopes:
        if scope.name.startswith("key:") and scope.name.endswith(":total"):
            return scope.name[len("key:") : -len(":total")]
    return "(none)"


class Ledger:
    """Budgets in Redis: atomic reservations, settlement and release (see the module)."""

    def __init__(
        self, redis: RedisClient, prefix: str, *, hold_ttl_s: float, fail_open: bool = False
    ) -> None:
        self._redis = redis
        self._fail_open = fail_open
        self._prefix = f"{{{prefix}budget}}:"  # one hash tag: a cluster's scripts need one slot
        self._legacy_prefix = f"{prefix}budget:"
        self._hold_ttl_s = hold_ttl_s
        self._answered_at = -math.inf
        """When Redis last answered a budget script (monotonic); -inf since one failed."""
        self._reserve = redis.register_script(RESERVE)
        self._settle = redis.register_script(SETTLE)
        self._status = redis.register_script(STATUS)

    async def adopt_legacy_keys(self) -> int:
        """Rename budget records of the layout before hash tags (one node only: a cluster never
        ran the old layout), so an upgrade keeps every key's spend. Returns how many moved.

        Done once per Redis (a marker key says so): scanning the keyspace at every start would
        cost start-up time for nothing."""
        marker = f"{self._prefix}layout"
        moved = 0
        with store_errors("Budgets"):
            if await self._redis.get(marker) == b"hash-tagged":
                return 0
            async for name in self._redis.scan_iter(match=f"{self._legacy_prefix}*"):
                old = name.decode() if isinstance(name, bytes) else str(name)
                await self._redis.renamenx(old, self._prefix + old[len(self._legacy_prefix) :])
                moved += 1
            await self._redis.set(marker, "hash-tagged")
        return moved

    def _keys(self, scopes: Sequence[Scope]) -> list[str]:
        return [
            f"{self._prefix}{s.name}:{part}" for s in scopes for part in ("spent", "holds", "exp")
        ]

    async def reserve(
        self,
        scopes: Sequence[Scope],
        cost: Estimate | float,
        *,
        settling: list[Hold] | None = None,
    ) -> Hold:
        """Hold what the call may cost in every scope, granting it as many output tokens as
        they can all pay for; raise ``BudgetExceeded`` naming the tightest scope if that is
        fewer than ``cost.min_tokens``. A plain amount holds exactly that.

        ``settling``: earlier holds; those in the same scopes are finished by the same script,
        first (one round trip fewer), and taken out of the list (left there if Redis fails).

        Without a limit in any scope, nothing can refuse the call, and a hold would only prove
        that Redis answers before anything is spent. So the call rides, holding nothing (no
        round trip), and is charged when the run settles (``finish_all``), when that is already
        known: an earlier hold of the same scopes is among ``settling`` (the run's first call
        held, or rode), or Redis answered a budget script of this replica within ``ANSWERED_S``
        and none has failed since (a failure makes the next calls hold, so an outage fails
        them closed; a run that rode on an answer given just before an outage fails when it
        settles, as one that was running then does)."""
        if not isinstance(cost, Estimate):
            cost = Estimate(input_usd=cost)
        hold = Hold(run_scoped_id(), tuple(scopes), cost.worst_usd, cost.max_tokens)
        if not scopes:
            return hold
        if not hold.limited and (
            time.monotonic() - self._answered_at < ANSWERED_S
            or any(earlier.scopes == hold.scopes for earlier in settling or ())
        ):
            hold.reserved = False
            return hold
        now = time.time()
        args: list[str | float] = [
            now,
            hold.id,
            now + self._hold_ttl_s,
            cost.input_usd,
            cost.usd_per_output_token,
            cost.max_tokens,
            cost.max_tokens if cost.need_tokens is None else cost.need_tokens,
            cost.min_tokens,
            cost.plenty,
        ]
        for scope in scopes:
            args += [min(scope.limit_usd, _LUA_UNLIMITED), scope.ttl_s]
        pending = settling if settling is not None else []
        earlier = [h for h in pending if h.scopes == hold.scopes and h.reserved]
        for done in earlier:
            args += [done.id, done.cost_usd if done.cost_usd is not None else 0.0]
        try:
            refused, tokens, amount = await self._answer(self._reserve, self._keys(scopes), args)
        except StoreUnavailable:
            if not self._fail_open:
                raise  # fail closed: no spend we cannot count
            logger.warning("budgets unavailable (Redis): running uncounted (fail_open)")
            return Hold(hold.id, (), hold.amount_usd, cost.max_tokens)
        for done in earlier:
            pending.remove(done)
            self._finished(done)
        if refused:
            _HOLDS["refused"].inc()
            REFUSALS.labels(key_id_of(scopes)).inc()
            scope = scopes[int(refused) - 1]
            raise BudgetExceeded(scope.name, scope.limit_usd, float(amount))
        _HOLDS["reserved"].inc()
        HOLDS_IN_FLIGHT.inc()
        limited = any(scope.limit_usd != UNLIMITED for scope in scopes)
        capped = limited and cost.usd_per_output_token > 0
        return Hold(hold.id, hold.scopes, float(amount), int(tokens), capped)

    async def finish(self, hold: Hold) -> None:
        """Settle to ``hold.cost_usd`` when it is set, else release (must complete: shielded)."""
        await self._finish_together([hold])

    async def _finish_together(self, holds: list[Hold]) -> None:
        """Finish holds of the same scopes in one script. With a call among them that rode on a
        hold (``Hold.reserved`` false), each is charged through a marker of its own, set with
        its charge, so a script sent again charges nobody twice, and a first hold that lapsed
        during a long run is charged all the same; the reserved ones are only dropped."""
        scopes = holds[0].scopes
        if not scopes:
            return
        riding = not all(hold.reserved for hold in holds)
        reserved = [hold for hold in holds if hold.reserved]
        if not reserved and not any(hold.cost_usd for hold in holds):
            return  # rode on a hold and cost nothing: nothing to drop, nothing to charge
        keys = self._keys(scopes)
        args: list[str | float] = [len(scopes), int(self._hold_ttl_s), len(reserved)]
        args += [scope.ttl_s for scope in scopes]
        for hold in reserved:
            args += [hold.id, 0.0 if riding else (hold.cost_usd or 0.0)]
        if riding:
            keys += [f"{self._prefix}charged:{hold.id}" for hold in holds]
            args += [hold.cost_usd or 0.0 for hold in holds]
        try:
            with anyio.CancelScope(shield=True):
                await self._answer(self._settle, keys, args)
        except BaseException:
            HOLDS_IN_FLIGHT.dec(len(reserved))  # left to lapse in Redis: not ours any more
            raise
        for hold in holds:
            self._finished(hold)

    async def _answer(
        self, script: Callable[..., Awaitable[Any]], keys: list[str], args: Sequence[Any]
    ) -> Any:
        """``script``'s answer; when Redis last answered, or that it failed, is noted."""
        try:
            with store_errors("Budgets"):
                answer = await script(keys=keys, args=args)
        except StoreUnavailable:
            self._answered_at = -math.inf
            raise
        self._answered_at = time.monotonic()
        return answer

    @staticmethod
    def _finished(hold: Hold) -> None:
        """Count a call's hold settled (or released) in Redis."""
        if hold.reserved:
            HOLDS_IN_FLIGHT.dec()
        _HOLDS["settled" if hold.cost_usd is not None else "released"].inc()
        series(SPEND, key_id_of(hold.scopes)).inc(hold.cost_usd or 0.0)

    @asynccontextmanager
    async def hold(
        self,
        scopes: Sequence[Scope],
        cost: Estimate | float,
        *,
        settle_later: list[Hold] | None = None,
    ) -> AsyncIterator[Hold]:
        """Reserve on enter; settle (or, on any failure, release) on exit.

        ``settle_later``: a call that went well is put there instead of settled, for
        ``finish_all`` to settle off the critical path (while the run's tools run); its hold
        counts against the budget until then, so nothing can spend it twice."""
        hold = await self.reserve(scopes, cost, settling=settle_later)
        try:
            yield hold
        except BaseException:
            try:
                await self.finish(hold)  # the real cost if it is known by now, else a release
            except StoreUnavailable:
                # What failed first is what the caller must hear; the hold lapses by itself.
                logger.warning(
                    "a budget hold could not be finished (Redis): it lapses within %.0f s",
                    self._hold_ttl_s,
                )
            raise
        if settle_later is None:
            await self.finish(hold)
        else:
            settle_later.append(hold)

    async def finish_all(self, holds: list[Hold], *, keep_unlimited: bool = False) -> None:
        """Finish every hold in ``holds``, taking them out of it first (so two callers never
        finish one hold twice); those of the same scopes in one script. ``keep_unlimited``:
        holds with no limit in any scope stay, for the run's end to finish together (held a
        little longer costs no one anything there, and it saves round trips)."""
        taken = [hold for hold in holds if hold.limited or not keep_unlimited]
        for hold in taken:
            holds.remove(hold)
        by_scopes: dict[tuple[Scope, ...], list[Hold]] = {}
        for hold in taken:
            by_scopes.setdefault(hold.scopes, []).append(hold)
        for together in by_scopes.values():
            await self._finish_together(together)

    async def ensure_available(
        self, scopes: Sequence[Scope], least_usd: Callable[[], float] = lambda: 0.0
    ) -> None:
        """Raise ``BudgetExceeded`` if a limited scope cannot pay ``least_usd()`` (before a run:
        one call's input and its minimum output), or has nothing left at all.

        Without a limit there is nothing to check, so no round trip (a Redis that is down is
        found by the first call's reservation, or by the settlement of a run that rode on a
        recent answer: see ``reserve``) and no estimate (counting a long history's tokens is a
        visible share of its run)."""
        if all(scope.limit_usd == UNLIMITED for scope in scopes):
            return
        try:
            statuses = await self.status(scopes)
        except StoreUnavailable:
            if self._fail_open:
                return
            raise
        least = least_usd()
        for status in statuses:
            if status.scope.limit_usd == UNLIMITED:
                continue
            if status.remaining_usd <= 0 or status.remaining_usd < least:
                REFUSALS.labels(key_id_of(scopes)).inc()
                raise BudgetExceeded(
                    status.scope.name, status.scope.limit_usd, status.remaining_usd
                )

    async def status(self, scopes: Sequence[Scope]) -> list[ScopeStatus]:
        raw = await self._answer(self._status, self._keys(scopes), [time.time()])
        values = [float(v) for v in raw]
        return [
            ScopeStatus(scope, values[3 * i], values[3 * i + 1], int(values[3 * i + 2]))
            for i, scope in enumerate(scopes)
        ]
