"""``/v1/conversations``: OpenAI's Conversations API (create, retrieve, update, delete; add,
list, retrieve and delete items). ``responses.create(conversation=...)`` reads and extends a
conversation (``app/api/responses``)."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends, Query
from pydantic import BaseModel, ConfigDict, Field

from app.api.deps import Services, authenticate, get_services
from app.api.errors import ERROR_RESPONSES
from app.api.json_route import OrjsonRoute
from app.api.responses.items import fold
from app.api.responses.request import as_items
from app.api.wire import cursor_page
from app.errors import InvalidRequest
from app.principal import Principal

router = APIRouter(responses=ERROR_RESPONSES, route_class=OrjsonRoute)

MAX_ITEMS_A_REQUEST = 20
"""Items one request may add, as at OpenAI."""
Metadata = dict[str, str]


class CreateConversation(BaseModel):
    model_config = ConfigDict(extra="ignore")

    items: list[dict[str, Any]] | None = Field(default=None, max_length=MAX_ITEMS_A_REQUEST)
    metadata: Metadata | None = Field(default=None, max_length=16)


class UpdateConversation(BaseModel):
    model_config = ConfigDict(extra="ignore")

    metadata: Metadata = Field(max_length=16)


class AddItems(BaseModel):
    model_config = ConfigDict(extra="ignore")

    items: list[dict[str, Any]] = Field(min_length=1, max_length=MAX_ITEMS_A_REQUEST)


def _checked_metadata(metadata: Metadata | None) -> Metadata:
    for key, value in (metadata or {}).items():
        if len(key) > 64 or len(value) > 512:
            raise InvalidRequest(
                "Metadata keys are at most 64 characters, values at most 512.", param="metadata"
            )
    return metadata or {}


_NAMED = ("conversation.items", "items")
"""What an error calls the conversation's items and the request's."""


@router.post("/v1/conversations")
async def create_conversation(
    body: CreateConversation,
    services: Services = Depends(get_services),
    principal: Principal = Depends(authenticate),
) -> dict[str, Any]:
    items = as_items(body.items or [])
    # Items a response could not read are refused now.
    fold([], items, instructions=None, named=_NAMED, answered=False)
    return await services.conversations.create(
        principal.key_id, _checked_metadata(body.metadata), items
    )


@router.get("/v1/conversations/{conversation_id}")
async def retrieve_conversation(
    conversation_id: str,
    services: Services = Depends(get_services),
    principal: Principal = Depends(authenticate),
) -> dict[str, Any]:
    return await services.conversations.get(conversation_id, principal.key_id)


@router.post("/v1/conversations/{conversation_id}")
async def update_conversation(
    conversation_id: str,
    body: UpdateConversation,
    services: Services = Depends(get_services),
    principal: Principal = Depends(authenticate),
) -> dict[str, Any]:
    metadata = _checked_metadata(body.metadata)
    return await services.conversations.update(conversation_id, principal.key_id, metadata)


@router.delete("/v1/conversations/{conversation_id}")
async def delete_conversation(
    conversation_id: str,
    services: Services = Depends(get_services),
    principal: Principal = Depends(authenticate),
) -> dict[str, Any]:
    await services.conversations.delete(conversation_id, principal.key_id)
    return {"id": conversation_id, "object": "conversation.deleted", "deleted": True}


@router.post("/v1/conversations/{conversation_id}/items")
async def add_items(
    conversation_id: str,
    body: AddItems,
    services: Services = Depends(get_services),
    principal: Principal = Depends(authenticate),
) -> dict[str, Any]:
    items = as_items(body.items)
    held = await services.conversations.items(conversation_id, principal.key_id)
    fold(held, items, instructions=None, named=_NAMED, answered=False)  # as above
    await services.conversations.append(conversation_id, principal.key_id, items)
    return cursor_page(items, after=None, limit=len(items), order="asc")


@router.get("/v1/conversations/{conversation_id}/items")
async def list_items(
    conversation_id: str,
    services: Services = Depends(get_services),
    principal: Principal = Depends(authenticate),
    order: str = Query("desc", pattern="^(asc|desc)$"),
    limit: int = Query(20, ge=1, le=100),
    after: str | None = None,
) -> dict[str, Any]:
    items = await services.conversations.items(conversation_id, principal.key_id)
    return cursor_page(items, after=after, limit=limit, order=order)


@router.get("/v1/conversations/{conversation_id}/items/{item_id}")
async def retrieve_item(
    conversation_id: str,
    item_id: str,
    services: Services = Depends(get_services),
    principal: Principal = Depends(authenticate),
) -> dict[str, Any]:
    return await services.conversations.item(conversation_id, principal.key_id, item_id)


@router.delete("/v1/conversations/{conversation_id}/items/{item_id}")
async def delete_item(
    conversation_id: str,
    item_id: str,
    services: Services = Depends(get_services),
    principal: Principal = Depends(authenticate),
) -> dict[str, Any]:
    return await services.conversations.delete_item(conversation_id, principal.key_id, item_id)
