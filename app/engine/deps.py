"""What the engine needs from the process, built once in the app's lifespan."""

from __future__ import annotations

from dataclasses import dataclass

from app.budget.ledger import Ledger
from app.config import BudgetSettings, SamplingSettings
from app.limits import KeyLimits
from app.llm.client import ModelClient
from app.mcp.sessions.pool import SessionPool
from app.mcp.transport.clients import McpClients
from app.store.hidden_turns import HiddenTurns
from app.store.rate import RateLimiter


@dataclass(frozen=True, slots=True)
class EngineDeps:
    """What the loop needs from the process."""

    models: ModelClient
    mcp: McpClients
    sessions: SessionPool
    hidden: HiddenTurns
    rates: RateLimiter
    sampling: SamplingSettings
    ledger: Ledger
    budget: BudgetSettings
    key_limits: KeyLimits
