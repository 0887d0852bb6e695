"""``POST /v1/chat/completions``."""

from __future__ import annotations

from fastapi import APIRouter, Depends, Request
from fastapi.responses import Response

from app.api.chat.render import ChatRenderer
from app.api.chat.request import ChatCompletionRequest, parse_chat
from app.api.deps import Services, authenticate, get_services
from app.api.errors import ERROR_RESPONSES
from app.api.json_route import OrjsonRoute
from app.api.serve import serve
from app.engine.loop import run
from app.principal import Principal

router = APIRouter(responses=ERROR_RESPONSES, route_class=OrjsonRoute)


@router.post("/v1/chat/completions", response_model=None)
async def chat_completions(
    http: Request,
    body: ChatCompletionRequest,
    services: Services = Depends(get_services),
    principal: Principal = Depends(authenticate),
) -> Response:
    request = await parse_chat(body, services, principal)
    renderer = ChatRenderer(
        model=body.model,
        stream=bool(body.stream),
        include_usage=bool(body.stream_options and body.stream_options.include_usage),
    )
    return await serve(
        http,
        renderer,
        run(request, services.engine),
        stream=bool(body.stream),
        keepalive_s=services.settings.keepalive_s,
        progress=request.progress,
    )
