"""Which budgets a model call is charged to, and what it may cost."""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

from app.budget.ledger import UNLIMITED, Estimate, Scope
from app.principal import Principal

_DAY_S, _MONTH_S = 2 * 86_400, 32 * 86_400
"""A period's record outlives the period a little, then expires."""
CHARS_PER_TOKEN = 1
"""An upper bound, not an average (about 4): a byte-level tokenizer never makes more tokens
than the text has bytes, and the JSON below has at least as many characters as the text has
UTF-8 bytes (non-ASCII is escaped), plus the framing every message costs. Holding the input at
its bound is what keeps spend within a limit; the hold is settled to the real count after."""


def key_scopes(principal: Principal, now: datetime | None = None) -> list[Scope]:
    """The caller's total, daily and monthly budgets (counted even without a limit)."""
    now = now or datetime.now(UTC)
    budget, key = principal.budget, principal.key_id

    def limit(value: float | None) -> float:
        return UNLIMITED if value is None else value

    day = now.date().isoformat()  # YYYY-MM-DD: a tenth of strftime's CPU, twice a run
    return [
        Scope(f"key:{key}:total", limit(budget.total_usd)),
        Scope(f"key:{key}:day:{day}", limit(budget.daily_usd), _DAY_S),
        Scope(f"key:{key}:month:{day[:7]}", limit(budget.monthly_usd), _MONTH_S),
    ]


def run_scope(principal: Principal, run_id: str) -> list[Scope]:
    """The run's own cap, when the key has one."""
    cap = principal.budget.per_run_usd
    return [] if cap is None else [Scope(f"run:{run_id}", cap, _DAY_S)]


def server_scope(label: str, limit_usd: float | None) -> list[Scope]:
    """A registered server's sampling budget, when it has one."""
    return [] if limit_usd is None else [Scope(f"server:{label}", limit_usd)]


def estimate(
    prices: Any,
    messages: Sequence[Any],
    tools: Sequence[Any],
    *,
    max_tokens: int,
    min_tokens: int,
    need_tokens: int | None = None,
    plenty: int = 0,
    input_tokens: int | None = None,
) -> Estimate:
    """A call's input and output, at the model's prices (unknown: $0). The input is
    ``input_tokens`` when counted (``app.budget.tokens``), else bounded from its size.
    ``need_tokens`` and ``plenty``: the fair grant of a tight budget (``Estimate``)."""
    need = max_tokens if need_tokens is None else min(need_tokens, max_tokens)
    least = min(min_tokens, need)
    if prices is None:
        return Estimate(input_usd=0.0, max_tokens=max_tokens, min_tokens=least)
    if input_tokens is None:
        input_tokens = len(json.dumps([messages, tools], default=str)) // CHARS_PER_TOKEN
    return Estimate(
        input_usd=input_tokens * prices.input,
        usd_per_output_token=prices.output,
        max_tokens=max_tokens,
        need_tokens=need,
        min_tokens=least,
        plenty=plenty,
    )
