"""Models list and health probes."""

from __future__ import annotations

import hmac
from typing import Any

from fastapi import APIRouter, Depends, Request
from fastapi.responses import JSONResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from app.api.deps import Services, authenticate, get_services
from app.api.errors import ERROR_RESPONSES
from app.errors import ModelNotFound, Unauthenticated
from app.principal import Principal
from app.store.connect import health

router = APIRouter(responses=ERROR_RESPONSES)


def _model(name: str) -> dict[str, Any]:
    return {"id": name, "object": "model", "created": 0, "owned_by": "toolbridge"}


@router.get("/v1/models")
async def list_models(
    services: Services = Depends(get_services), principal: Principal = Depends(authenticate)
) -> dict[str, Any]:
    names = [n for n in services.engine.models.names() if principal.may_use_model(n)]
    return {"object": "list", "data": [_model(name) for name in names]}


@router.get("/v1/models/{model:path}")
async def retrieve_model(
    model: str,
    services: Services = Depends(get_services),
    principal: Principal = Depends(authenticate),
) -> dict[str, Any]:
    """One model (``client.models.retrieve``); one this key may not use is as unknown (404)."""
    services.engine.models.check(model)  # unknown: ModelNotFound
    if not principal.may_use_model(model):
        raise ModelNotFound(model)
    return _model(model)


@router.get("/metrics", response_model=None)
async def metrics(request: Request, services: Services = Depends(get_services)) -> Response:
    """Prometheus metrics (see ``app/metrics.py`` and docs/operations.md for their meaning); with
    ``TOOLBRIDGE_METRICS_TOKEN`` set, only for scrapers that send it as a bearer token."""
    token = services.settings.metrics_token
    if token is not None:
        given = request.headers.get("authorization", "")
        expected = f"Bearer {token.get_secret_value()}"
        if not hmac.compare_digest(given.encode(), expected.encode()):
            raise Unauthenticated("/metrics needs the metrics bearer token.")
    return Response(generate_latest(), media_type=CONTENT_TYPE_LATEST)


@router.get("/healthz")
async def healthz() -> dict[str, str]:
    """Alive: the process answers."""
    return {"status": "ok"}


@router.get("/readyz", response_model=None)
async def readyz(services: Services = Depends(get_services)) -> JSONResponse:
    """Ready: config loaded and Redis reachable (a cluster: its state ``ok``)."""
    try:
        redis = await health(services.redis)
    except Exception as exc:  # noqa: BLE001 - boundary: any Redis failure means not ready
        return JSONResponse({"status": "unavailable", "redis": type(exc).__name__}, status_code=503)
    ready = redis["redis"] == "ok"
    body = {"status": "ok" if ready else "unavailable", **redis}
    body["models"] = len(services.engine.models.names())
    return JSONResponse(body, status_code=200 if ready else 503)
