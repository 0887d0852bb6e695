"""Which budgets a call is charged to: a key's total, its day and its month (UTC)."""

from __future__ import annotations

from datetime import UTC, datetime

from app.budget.ledger import UNLIMITED
from app.budget.scopes import key_scopes
from app.config import KeyBudget
from app.principal import Principal


def test_a_key_is_charged_to_its_total_its_utc_day_and_its_utc_month() -> None:
    principal = Principal(key_id="team", budget=KeyBudget(daily_usd=2.5, monthly_usd=40))
    last_minute = datetime(2026, 3, 9, 23, 59, tzinfo=UTC)
    scopes = key_scopes(principal, last_minute)
    assert [(s.name, s.limit_usd) for s in scopes] == [
        ("key:team:total", UNLIMITED),
        ("key:team:day:2026-03-09", 2.5),
        ("key:team:month:2026-03", 40),
    ]
    # A new day and a new month are new budgets; the total carries on.
    next_day = key_scopes(principal, datetime(2026, 4, 1, 0, 0, tzinfo=UTC))
    assert [s.name for s in next_day] == [
        "key:team:total",
        "key:team:day:2026-04-01",
        "key:team:month:2026-04",
    ]
    assert scopes[1].ttl_s < scopes[2].ttl_s  # a day's record expires before a month's
