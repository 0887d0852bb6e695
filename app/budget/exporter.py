"""The budget gauges: how much of each limited key's budget is used, read from Redis.

Spend is shared by every replica, so it is read, not counted: every ``EVERY_S`` each replica
reads the limited keys' scopes (one script call per key) and sets
``toolbridge_budget_used_ratio{key, period}``. Every replica reports the same value (take
``max`` across them). Keys without any limit have nothing to report and cost nothing.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

import anyio

from app.budget.ledger import UNLIMITED, Ledger
from app.budget.scopes import key_scopes
from app.config import ApiKeyConfig
from app.errors import StoreUnavailable
from app.metrics import BUDGET_USED
from app.principal import Principal

logger = logging.getLogger(__name__)

EVERY_S = 30.0
PERIODS = ("total", "day", "month")
"""``key_scopes`` order."""


async def export_once(ledger: Ledger, principals: Sequence[Principal]) -> None:
    for principal in principals:
        statuses = await ledger.status(key_scopes(principal))
        for period, status in zip(PERIODS, statuses, strict=True):
            limit = status.scope.limit_usd
            if limit == UNLIMITED:
                continue
            used = status.spent_usd + status.held_usd
            BUDGET_USED.labels(principal.key_id, period).set(used / limit if limit else 1.0)


async def export_budget_use(ledger: Ledger, keys: Sequence[ApiKeyConfig]) -> None:
    """Forever, every ``EVERY_S``: the gauges of the keys that have a limit."""
    limited = [
        Principal(key_id=k.id, budget=k.budget)
        for k in keys
        if (k.budget.total_usd, k.budget.daily_usd, k.budget.monthly_usd) != (None, None, None)
    ]
    if not limited:
        return
    while True:
        try:
            await export_once(ledger, limited)
        except StoreUnavailable:
            logger.warning("budget gauges not updated: Redis unavailable")
        await anyio.sleep(EVERY_S)
