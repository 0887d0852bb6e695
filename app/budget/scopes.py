"""Which budgets a model call is charged to, and its worst-case cost."""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

from app.budget.ledger import UNLIMITED, Scope
from app.principal import Principal

_DAY_S, _MONTH_S = 2 * 86_400, 32 * 86_400
"""A period's record outlives the period a little, then expires."""
CHARS_PER_TOKEN = 3
"""Pessimistic (real text averages about 4): the worst case should not be an underestimate."""


def key_scopes(principal: Principal, now: datetime | None = None) -> list[Scope]:
    """The caller's total, daily and monthly budgets (counted even without a limit)."""
    now = now or datetime.now(UTC)
    budget, key = principal.budget, principal.key_id

    def limit(value: float | None) -> float:
        return UNLIMITED if value is None else value

    return [
        Scope(f"key:{key}:total", limit(budget.total_usd)),
        Scope(f"key:{key}:day:{now:%Y-%m-%d}", limit(budget.daily_usd), _DAY_S),
        Scope(f"key:{key}:month:{now:%Y-%m}", limit(budget.monthly_usd), _MONTH_S),
    ]


def run_scope(principal: Principal, run_id: str) -> list[Scope]:
    """The run's own cap, when the key has one."""
    cap = principal.budget.per_run_usd
    return [] if cap is None else [Scope(f"run:{run_id}", cap, _DAY_S)]


def server_scope(label: str, limit_usd: float | None) -> list[Scope]:
    """A registered server's sampling budget, when it has one."""
    return [] if limit_usd is None else [Scope(f"server:{label}", limit_usd)]


def worst_case_usd(
    prices: Any, messages: Sequence[Any], tools: Sequence[Any], max_tokens: int
) -> float:
    """Input (estimated from its size) plus ``max_tokens`` of output, at the model's prices."""
    if prices is None:
        return 0.0
    size = len(json.dumps([messages, tools], default=str))
    return (size / CHARS_PER_TOKEN) * prices.input + max_tokens * prices.output
