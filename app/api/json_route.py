"""Routes for JSON bodies, cheaper per request than FastAPI's own, with the same answers.

- **Parsed by orjson.** FastAPI's route parses a JSON body with the stdlib's ``json.loads`` (a
  tenth of a long chat's CPU went to it). A body orjson refuses is parsed by the stdlib as
  before, so every malformed body gets the same answer as before (NaN, lone surrogates, bad
  UTF-8: the stdlib's own error or value). What orjson parsed needs no check for lone
  surrogates (it refuses them), so validation is told so (``PARSED_BY_ORJSON``).
- **Called without FastAPI's dependency machinery when nothing can go wrong.** A request whose
  body is ``application/json`` and valid goes straight to the endpoint with its body model and
  its ``(request)`` dependencies (FastAPI's handler cost about 70 µs more per request than this,
  measured). Anything else (another content type, a body that does not parse or validate, a
  route with query or path parameters) goes to FastAPI's handler, which answers as it always
  did: its errors stay the only errors.

FastAPI's documented way to change how a route handles its request: a ``route_class``.

``HotRoutes`` goes one step further for the POST routes such a call can serve: it calls them
from a middleware, ahead of FastAPI's exception middleware, router and route layers (a first
version saved 3 to 9 % of a run's CPU, ``docs/performance.md``). Their errors are answered by
the app's own exception handlers; anything the lean call declines still goes through FastAPI."""

from __future__ import annotations

import inspect
import json
from collections.abc import Awaitable, Callable, Coroutine, Iterable
from typing import Any

import orjson
from fastapi import Request, Response
from fastapi.routing import APIRoute
from fastapi.telemetry import get_telemetry_data
from pydantic import BaseModel
from starlette.routing import BaseRoute
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from app.api.middleware import replay
from app.api.wire import PARSED_BY_ORJSON

LeanCall = Callable[["_OrjsonRequest"], Awaitable[Response | None]]


class _OrjsonRequest(Request):
    parsed_by_orjson = False

    async def json(self) -> Any:
        if not hasattr(self, "_json"):
            body = await self.body()
            try:
                self._json = orjson.loads(body)
                self.parsed_by_orjson = True
            except orjson.JSONDecodeError:
                self._json = json.loads(body)  # the stdlib's value, or its error, as before
        return self._json


class OrjsonRoute(APIRoute):
    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()
        lean = lean_call(self)

        async def parsed_by_orjson(request: Request) -> Response:
            ours = _OrjsonRequest(request.scope, request.receive)
            if lean is not None and (response := await lean(ours)) is not None:
                return response
            return await handler(ours)  # the body read is kept on the request

        return parsed_by_orjson


def lean_call(route: APIRoute) -> LeanCall | None:
    """The endpoint called directly, for a route that takes the request, one body model and
    dependencies that take only the request; None for any other route. The call answers None
    (FastAPI's handler answers instead) unless the body is JSON and valid."""
    dependant = route.dependant
    if (
        dependant.path_params
        or dependant.query_params
        or dependant.header_params
        or dependant.cookie_params
        or len(dependant.body_params) != 1
        or dependant.request_param_name is None
    ):
        return None
    [body] = dependant.body_params
    model = body.field_info.annotation
    if not (isinstance(model, type) and issubclass(model, BaseModel)):
        return None
    dependencies: list[tuple[str, str, Callable[..., Awaitable[Any]]]] = []
    for sub in dependant.dependencies:
        if (
            sub.dependencies
            or sub.path_params
            or sub.query_params
            or sub.header_params
            or sub.cookie_params
            or sub.body_params
            or sub.name is None
            or sub.request_param_name is None
            or not inspect.iscoroutinefunction(sub.call)
        ):
            return None
        dependencies.append((sub.name, sub.request_param_name, sub.call))
    request_name, body_name, endpoint = dependant.request_param_name, body.name, route.endpoint

    async def call(request: _OrjsonRequest) -> Response | None:
        if request.headers.get("content-type") != "application/json":
            return None
        try:
            data = await request.json()
            context = {PARSED_BY_ORJSON: request.parsed_by_orjson}
            value = model.model_validate(data, context=context)
        except Exception:  # noqa: BLE001 - not JSON (even too deep to parse), or not valid:
            return None  # FastAPI's handler parses it again and answers as it always did
        arguments: dict[str, Any] = {request_name: request, body_name: value}
        for name, param, dependency in dependencies:
            arguments[name] = await dependency(**{param: request})
        if (telemetry := get_telemetry_data()) is not None:  # as FastAPI's handler fills it
            telemetry.request, telemetry.body, telemetry.values = request, data, arguments
        response: Response = await endpoint(**arguments)
        return response

    return call


class HotRoutes:
    """ASGI middleware, the innermost of the app's: a POST to one of ``routes`` that
    ``lean_call`` can serve is answered here (see the module).

    Outside it, everything stays as it is for every request: the request id, the body limit,
    FastAPI's server-error middleware. Install it only without FastAPI's tracing: the router
    is what names a request's span after its route."""

    def __init__(self, app: ASGIApp, routes: Iterable[BaseRoute]) -> None:
        self.app = app
        self._lean: dict[str, tuple[APIRoute, LeanCall]] = {}
        for route in routes:
            if not isinstance(route, OrjsonRoute) or "POST" not in (route.methods or ()):
                continue
            if (lean := lean_call(route)) is not None:
                self._lean[route.path] = (route, lean)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        hot = None
        if scope["type"] == "http" and scope["method"] == "POST":
            hot = self._lean.get(scope["path"])
        if hot is None:
            await self.app(scope, receive, send)
            return
        route, lean = hot
        body = await _read_body(receive)
        if body is None:
            return  # the client left before its request was in: nobody to answer
        scope["route"] = route  # as FastAPI's router sets it (the request metrics' label)
        request = _OrjsonRequest(scope, replay(body, receive))
        try:
            response = await lean(request)
        except Exception as exc:  # noqa: BLE001 - answered by the app's handler for it
            response = await _handled(scope, request, exc)
        if response is None:  # declined: FastAPI answers, as it always did
            await self.app(scope, replay(body, receive), send)
            return
        await response(scope, receive, send)


async def _read_body(receive: Receive) -> list[Message] | None:
    """The request's body messages; None if the client disconnected first."""
    messages: list[Message] = []
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            return None
        messages.append(message)
        if not message.get("more_body"):
            return messages


async def _handled(scope: Scope, request: Request, exc: Exception) -> Response:
    """``exc`` answered by the app's handler for its class, as FastAPI's middleware would."""
    handlers = scope["app"].exception_handlers
    for cls in type(exc).__mro__:
        if (handler := handlers.get(cls)) is not None:
            response: Response = await handler(request, exc)
            return response
    raise exc
