"""``/v1/responses``: create (run, render, store), retrieve, delete, list input items."""

from __future__ import annotations

from collections.abc import AsyncGenerator
from contextlib import aclosing
from typing import Any

import anyio
from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import Response

from app.api.deps import Services, authenticate, get_services
from app.api.errors import ERROR_RESPONSES
from app.api.responses.render import ResponseRenderer
from app.api.responses.request import (
    ParsedResponses,
    ResponsesRequest,
    echoed_fields,
    parse_responses,
)
from app.api.serve import serve
from app.api.wire import cursor_page
from app.engine.events import RunEvent
from app.engine.loop import run
from app.principal import Principal

router = APIRouter(responses=ERROR_RESPONSES)


async def _store(
    services: Services, parsed: ParsedResponses, renderer: ResponseRenderer, enabled: bool
) -> None:
    """Keep the response (before the caller hears of it), unless ``store`` is false."""
    if not enabled:
        return
    previous = parsed.previous
    await services.responses.save(
        owner=parsed.run.principal.key_id,
        response=renderer.response(),
        input_items=parsed.input_items,
        previous=previous,
        previous_id=None if previous is None else previous.response["id"],
    )


@router.post("/v1/responses", response_model=None)
async def create_response(
    http: Request,
    body: ResponsesRequest,
    services: Services = Depends(get_services),
    principal: Principal = Depends(authenticate),
) -> Response:
    parsed = await parse_responses(body, services, principal)
    renderer = ResponseRenderer(fields=echoed_fields(body), stream=bool(body.stream))

    async def store() -> None:
        with anyio.CancelScope(shield=True):  # written before acknowledged, even if cancelled
            await _store(services, parsed, renderer, body.store is not False)

    events = run(parsed.run, services.engine)
    if parsed.conversation is not None:
        events = _in_conversation(events, services, parsed, renderer)
    return await serve(
        http,
        renderer,
        events,
        stream=bool(body.stream),
        keepalive_s=services.settings.keepalive_s,
        before_reply=store,
    )


async def _in_conversation(
    events: AsyncGenerator[RunEvent, None],
    services: Services,
    parsed: ParsedResponses,
    renderer: ResponseRenderer,
) -> AsyncGenerator[RunEvent, None]:
    """The run's events; a run that ends well adds its input and output to the conversation
    (whatever ``store`` says), and then, however it ended, the conversation is free for the
    next response (added first, so the next one reads them)."""
    assert parsed.conversation is not None
    conversation_id, hold = parsed.conversation
    try:
        async with aclosing(events) as items:
            async for event in items:
                yield event
        with anyio.CancelScope(shield=True):
            await services.conversations.append(
                conversation_id,
                parsed.run.principal.key_id,
                [*parsed.input_items, *renderer.output],
            )
    finally:
        with anyio.CancelScope(shield=True):
            await services.conversations.release(conversation_id, hold)


@router.get("/v1/responses/{response_id}")
async def retrieve_response(
    response_id: str,
    services: Services = Depends(get_services),
    principal: Principal = Depends(authenticate),
) -> dict[str, Any]:
    return (await services.responses.load(response_id, principal.key_id)).response


@router.delete("/v1/responses/{response_id}")
async def delete_response(
    response_id: str,
    services: Services = Depends(get_services),
    principal: Principal = Depends(authenticate),
) -> dict[str, Any]:
    await services.responses.delete(response_id, principal.key_id)
    return {"id": response_id, "object": "response", "deleted": True}


@router.get("/v1/responses/{response_id}/input_items")
async def list_input_items(
    response_id: str,
    services: Services = Depends(get_services),
    principal: Principal = Depends(authenticate),
    order: str = Query("desc", pattern="^(asc|desc)$"),
    limit: int = Query(20, ge=1, le=100),
    after: str | None = None,
) -> dict[str, Any]:
    items = (await services.responses.load(response_id, principal.key_id)).input_items
    return cursor_page(items, after=after, limit=limit, order=order)
