"""``/v1/responses``: create (run, render, store), retrieve, delete, list input items."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncGenerator, Awaitable, Callable
from contextlib import aclosing
from functools import partial
from typing import Any

import anyio
from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import JSONResponse, Response
from pydantic import Field

from app.api.deps import Services, authenticate, get_services
from app.api.errors import ERROR_RESPONSES, error_response_body
from app.api.json_route import OrjsonRoute
from app.api.responses.render import ResponseRenderer
from app.api.responses.request import (
    ParsedResponses,
    ResponsesRequest,
    echoed_fields,
    parse_responses,
)
from app.api.serve import serve
from app.api.sse import EventStreamResponse, sse_event
from app.api.wire import cursor_page
from app.engine.events import RunEvent
from app.engine.loop import first_call_input_tokens, run
from app.errors import InvalidRequest, NotFound, PermissionDenied
from app.principal import Principal
from app.store.background import TERMINAL

router = APIRouter(responses=ERROR_RESPONSES, route_class=OrjsonRoute)
CANCEL_WAIT_S = 10.0
"""How long a cancel waits for the running replica to stop the run (it looks every second)."""


async def _store(
    services: Services, parsed: ParsedResponses, renderer: ResponseRenderer, enabled: bool
) -> None:
    """Keep the response (before the caller hears of it), unless ``store`` is false."""
    if not enabled:
        return
    await services.responses.save(
        owner=parsed.run.principal.key_id,
        response=renderer.response(),
        input_items=parsed.input_items,
        previous=parsed.previous,
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
    release: Callable[[], Awaitable[None]] | None = None
    if parsed.conversation is not None:
        events = _in_conversation(events, services, parsed, renderer)
        services.conversations.keep(*parsed.conversation, holder=events)
        # Released by the run as it ends; and again for a background response, whose run may
        # never start (refused, or cancelled while queued). Releasing a hold that is no longer
        # this response's changes nothing.
        release = partial(services.conversations.release, *parsed.conversation)
    if body.background:
        queued = await services.background.start(
            renderer,
            principal.key_id,
            events,
            before_done=store,
            after=release,
            input_items=parsed.input_items,
        )
        if body.stream:
            return _following(services, renderer.id, principal.key_id, starting_after=-1)
        return JSONResponse(queued)
    return await serve(
        http,
        renderer,
        events,
        stream=bool(body.stream),
        keepalive_s=services.settings.keepalive_s,
        progress=parsed.run.progress,
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


def _following(
    services: Services, response_id: str, owner: str, *, starting_after: int
) -> Response:
    return EventStreamResponse(
        services.background.follow(response_id, owner, starting_after),
        keepalive_s=services.settings.keepalive_s,
        stream_error=lambda exc: sse_event(error_response_body(exc)[1], name="error"),
    )


class InputTokensRequest(ResponsesRequest):
    model: str | None = Field(default=None, min_length=1)  # type: ignore[assignment]
    """Optional here, as in OpenAI's API: the first model the key may use is counted with."""


@router.post("/v1/responses/input_tokens")
async def count_input_tokens(
    body: InputTokensRequest,
    services: Services = Depends(get_services),
    principal: Principal = Depends(authenticate),
) -> dict[str, Any]:
    """The input tokens the request's first model call would send (OpenAI's
    ``responses.input_tokens.count``): its input and earlier items, and every tool's definition,
    the MCP servers' tools included (listed as a run lists them). Nothing runs or is stored."""
    if body.model is None:
        allowed = [m for m in services.engine.models.names() if principal.may_use_model(m)]
        if not allowed:
            raise PermissionDenied("This API key may not use any model.", param="model")
        body.model = allowed[0]
    parsed = await parse_responses(body, services, principal, counting=True)
    tokens = await first_call_input_tokens(parsed.run, services.engine)
    return {"object": "response.input_tokens", "input_tokens": tokens}


@router.get("/v1/responses/{response_id}", response_model=None)
async def retrieve_response(
    response_id: str,
    services: Services = Depends(get_services),
    principal: Principal = Depends(authenticate),
    stream: bool = False,
    starting_after: int = Query(-1, ge=-1),
) -> dict[str, Any] | Response:
    """A stored response; a background one as it stands (``stream=true``: its stream events
    after ``starting_after``, then the rest as they come)."""
    live = await services.background.store.state(response_id, principal.key_id)
    if live is None:
        stored = await services.responses.load(response_id, principal.key_id)  # else a 404
        if stream:
            raise InvalidRequest(
                "Only a background response can be streamed again.", param="stream"
            )
        return stored.response
    if stream:
        return _following(services, response_id, principal.key_id, starting_after=starting_after)
    if live["status"] in TERMINAL and live["status"] != "failed":
        with contextlib.suppress(NotFound):  # stored once done: the whole record
            return (await services.responses.load(response_id, principal.key_id)).response
    return live


@router.post("/v1/responses/{response_id}/cancel")
async def cancel_response(
    response_id: str,
    services: Services = Depends(get_services),
    principal: Principal = Depends(authenticate),
) -> dict[str, Any]:
    """Stop a background response (on whichever replica runs it); the Response as it ends."""
    store = services.background.store
    live = await store.state(response_id, principal.key_id)
    if live is None:
        await services.responses.load(response_id, principal.key_id)  # 404 if not there
        raise InvalidRequest("Only a background response can be cancelled.", param="response_id")
    if live["status"] in TERMINAL:
        return live
    await store.ask_cancel(response_id)
    with anyio.move_on_after(CANCEL_WAIT_S):
        while (live := await store.state(response_id, principal.key_id)) is not None:
            if live["status"] in TERMINAL:
                break
            await anyio.sleep(0.1)
    if live is None:  # expired meanwhile
        raise NotFound(f"Response with id '{response_id}' not found.")
    return live


@router.delete("/v1/responses/{response_id}")
async def delete_response(
    response_id: str,
    services: Services = Depends(get_services),
    principal: Principal = Depends(authenticate),
) -> dict[str, Any]:
    """Delete a stored response; a background one's state and stream events with it (else
    it could still be retrieved and streamed). A background response still running is a 400:
    cancel it first (deleted now, its run would store it again when it ends)."""
    live = await services.background.store.state(response_id, principal.key_id)
    if live is not None and live["status"] not in TERMINAL:
        raise InvalidRequest(
            "This background response is still running: cancel it before deleting it.",
            param="response_id",
        )
    try:
        await services.responses.delete(response_id, principal.key_id)
    except NotFound:
        if live is None:
            raise
        # Ended without a stored record (its replica stopped): its state is all there is.
    if live is not None:
        await services.background.store.forget(response_id)
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
    try:
        items = (await services.responses.load(response_id, principal.key_id)).input_items
    except NotFound:  # a background response is stored when it ends: until then, its state's
        running = await services.background.store.input_items(response_id, principal.key_id)
        if running is None:
            raise
        items = running
    return cursor_page(items, after=after, limit=limit, order=order)
