"""The process's services, built once in the lifespan and handed to handlers."""

from __future__ import annotations

from dataclasses import dataclass

from fastapi import Request
from redis.asyncio import Redis

from app.api.auth import KeyRing
from app.budget.scopes import key_scopes
from app.config import RegisteredServer, Settings
from app.engine.loop import EngineDeps
from app.errors import PermissionDenied
from app.mcp.ssrf import AddressPolicy
from app.principal import Principal
from app.store.responses import ResponseStore


@dataclass(frozen=True, slots=True)
class Services:
    """Everything a handler needs; no client lives in a module-level global."""

    settings: Settings
    redis: Redis
    engine: EngineDeps
    keys: KeyRing
    registered_servers: list[RegisteredServer]
    responses: ResponseStore
    address_policy: AddressPolicy
    """Where caller-supplied MCP server URLs may go (SSRF)."""

    async def check_budget(self, principal: Principal) -> None:
        """429 ``insufficient_quota`` before a run starts when the key has nothing left."""
        await self.engine.ledger.ensure_available(key_scopes(principal))

    def authorize_model(self, principal: Principal, model: str) -> None:
        """Unknown model: 404; a model this key may not use: 403."""
        self.engine.models.check(model)
        if not principal.may_use_model(model):
            raise PermissionDenied(f"This API key may not use the model '{model}'.", param="model")


def get_services(request: Request) -> Services:
    services: Services = request.app.state.services
    return services


def authenticate(request: Request) -> Principal:
    return get_services(request).keys.authenticate(request.headers.get("authorization"))
