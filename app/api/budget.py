"""``GET /v1/budget``: the calling key's limits, spent, held (and by how many calls in flight)
and remaining, per scope."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends

from app.api.deps import Services, authenticate, get_services
from app.api.errors import ERROR_RESPONSES
from app.budget.ledger import UNLIMITED
from app.budget.scopes import key_scopes
from app.principal import Principal

router = APIRouter(responses=ERROR_RESPONSES)


@router.get("/v1/budget")
async def budget(
    services: Services = Depends(get_services), principal: Principal = Depends(authenticate)
) -> dict[str, Any]:
    statuses = await services.engine.ledger.status(key_scopes(principal))
    scopes = []
    for status in statuses:
        limited = status.scope.limit_usd != UNLIMITED
        scopes.append(
            {
                "scope": status.scope.name,
                "limit_usd": status.scope.limit_usd if limited else None,
                "spent_usd": round(status.spent_usd, 10),
                "held_usd": round(status.held_usd, 10),
                "holds_in_flight": status.holds,
                "remaining_usd": round(status.remaining_usd, 10) if limited else None,
            }
        )
    return {
        "object": "budget",
        "key_id": principal.key_id,
        "per_run_usd": principal.budget.per_run_usd,
        "scopes": scopes,
    }
