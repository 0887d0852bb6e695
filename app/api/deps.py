"""The process's services, built once in the lifespan and handed to handlers."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from fastapi import Request

from app.api.auth import KeyRing
from app.api.responses.background import BackgroundRuns
from app.budget.scopes import estimate, key_scopes
from app.config import RegisteredServer, Settings
from app.engine.deps import EngineDeps
from app.errors import PermissionDenied
from app.mcp.transport.ssrf import AddressPolicy
from app.principal import Principal
from app.store.connect import RedisClient
from app.store.conversations import ConversationStore
from app.store.responses import ResponseStore


@dataclass(frozen=True, slots=True)
class Services:
    """Everything a handler needs; no client lives in a module-level global."""

    settings: Settings
    redis: RedisClient
    engine: EngineDeps
    keys: KeyRing
    registered_servers: list[RegisteredServer]
    responses: ResponseStore
    conversations: ConversationStore
    background: BackgroundRuns
    address_policy: AddressPolicy
    """Where caller-supplied MCP server URLs may go (SSRF)."""

    async def check_budget(
        self,
        principal: Principal,
        model: str,
        messages: list[dict[str, Any]],
        tools: list[dict[str, Any]],
    ) -> None:
        """429 ``insufficient_quota`` before a run starts when what the key has left cannot pay
        for the first call's input and the minimum output."""
        least = self.settings.budget.min_output_tokens

        def first_call_usd() -> float:
            prices = self.engine.models.prices(model)
            return estimate(prices, messages, tools, max_tokens=least, min_tokens=least).worst_usd

        await self.engine.ledger.ensure_available(key_scopes(principal), first_call_usd)

    def authorize_model(self, principal: Principal, model: str) -> None:
        """Unknown model: 404; a model this key may not use: 403."""
        self.engine.models.check(model)
        if not principal.may_use_model(model):
            raise PermissionDenied(f"This API key may not use the model '{model}'.", param="model")


def _services(request: Request) -> Services:
    services: Services = request.app.state.services
    return services


async def get_services(request: Request) -> Services:
    """The process's services (built in the lifespan). ``async`` only so that FastAPI calls it
    on the event loop: a plain ``def`` dependency costs a hop to its thread pool per request."""
    return _services(request)


async def authenticate(request: Request) -> Principal:
    """The caller's principal, from its bearer key (401 otherwise); ``async`` as above."""
    return _services(request).keys.authenticate(request.headers.get("authorization"))
