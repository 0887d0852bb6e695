"""The one place that knows OpenAI's error envelope: ``{"error": {message, type, param, code}}``.

Domain errors map to (status, type, code) through one table, searched along the class's MRO as
starlette does for its handlers, so a subclass inherits its parent's mapping.
"""

from __future__ import annotations

import logging
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel
from starlette.exceptions import HTTPException as StarletteHTTPException

from app.errors import (
    AuthorizationRequired,
    BudgetExceeded,
    ConversationBusy,
    InvalidRequest,
    ModelNotFound,
    NotFound,
    PermissionDenied,
    ServerUnreachable,
    StorageQuotaExceeded,
    StoreUnavailable,
    ToolbridgeError,
    TooManyBackgroundResponses,
    TooManyRuns,
    Unauthenticated,
    UpstreamModelError,
)

logger = logging.getLogger(__name__)

_TABLE: dict[type[Exception], tuple[int, str, str | None]] = {
    InvalidRequest: (400, "invalid_request_error", None),
    Unauthenticated: (401, "invalid_request_error", "invalid_api_key"),
    PermissionDenied: (403, "invalid_request_error", "permission_denied"),
    ModelNotFound: (404, "invalid_request_error", "model_not_found"),
    NotFound: (404, "invalid_request_error", "not_found"),
    ServerUnreachable: (424, "external_connector_error", "external_connector_error"),
    StoreUnavailable: (503, "server_error", "store_unavailable"),
    BudgetExceeded: (429, "insufficient_quota", "insufficient_quota"),
    TooManyRuns: (429, "rate_limit_exceeded", "rate_limit_exceeded"),
    TooManyBackgroundResponses: (429, "rate_limit_exceeded", "rate_limit_exceeded"),
    ConversationBusy: (409, "invalid_request_error", "conversation_locked"),
    StorageQuotaExceeded: (429, "insufficient_quota", "storage_quota_exceeded"),
    ToolbridgeError: (500, "server_error", None),
}


class ErrorDetail(BaseModel):
    message: str
    type: str
    param: str | None
    code: str | None


class ErrorBody(BaseModel):
    """OpenAI's error envelope."""

    error: ErrorDetail


ERROR_RESPONSES: dict[int | str, dict[str, Any]] = {
    status: {"model": ErrorBody, "description": description}
    for status, description in (
        (400, "Malformed or unsupported request"),
        (401, "Missing or unknown API key"),
        (403, "The key may not use this model or server"),
        (404, "Not found"),
        (413, "Request body too large"),
        (424, "An MCP server could not be listed"),
        (500, "Internal error"),
        (502, "The model provider failed"),
        (503, "The model provider or the store is unavailable"),
    )
}
"""Documented on every route, so the OpenAPI schema says what clients really receive."""


def envelope(
    message: str, type_: str, *, param: str | None = None, code: str | None = None
) -> dict[str, Any]:
    """OpenAI's error envelope: ``{"error": {message, type, param, code}}``."""
    return {"error": {"message": message, "type": type_, "param": param, "code": code}}


def _upstream(exc: UpstreamModelError) -> tuple[int, dict[str, Any]]:
    """Provider failures: their 4xx stay the caller's problem, the rest is ours to report."""
    if exc.status == 400:
        return 400, envelope(exc.message, "invalid_request_error", code="upstream_bad_request")
    status = 503 if exc.status in (429, 503, 504, None) else 502
    return status, envelope(exc.message, "server_error", code="upstream_model_error")


def error_response_body(exc: BaseException) -> tuple[int, dict[str, Any]]:
    """Status and envelope for any exception; unknown ones are logged and never detailed."""
    if isinstance(exc, UpstreamModelError):
        return _upstream(exc)
    if isinstance(exc, ToolbridgeError):
        for cls in type(exc).__mro__:
            if cls in _TABLE:
                status, type_, code = _TABLE[cls]
                body = envelope(exc.message, type_, param=exc.param, code=code)
                if isinstance(exc, AuthorizationRequired):  # what the server said, for OAuth
                    challenge = {"resource_metadata": exc.resource_metadata, "scope": exc.scope}
                    body["error"]["www_authenticate"] = challenge
                return status, body
    logger.error("unhandled error", exc_info=exc)
    return 500, envelope("The server had an error while processing your request.", "server_error")


_OUTSIDE_THE_BODY = frozenset({"query", "path", "header", "cookie"})


def _param(loc: tuple[Any, ...], body: Any, missing: bool) -> str | None:
    """``("body", "tools", 0, "mcp", "server_label")`` -> ``tools[0].server_label``.

    pydantic puts the branch of a union in ``loc`` (``mcp``, ``str``): walked against the body,
    a name the body does not hold is such a branch, unless it is the last part of a ``missing``
    error (the field that is missing)."""
    parts = list(loc[1:] if loc[:1] == ("body",) else loc)
    text, value = "", body
    for index, part in enumerate(parts):
        if isinstance(part, int) and isinstance(value, list) and 0 <= part < len(value):
            text, value = f"{text}[{part}]", value[part]
        elif isinstance(value, dict) and (part in value or (missing and index == len(parts) - 1)):
            text, value = f"{text}.{part}" if text else str(part), value.get(part)
    return text or None


def validation_error(
    errors: list[Any], body: Any = None, content_type: str | None = None
) -> tuple[int, dict[str, Any]]:
    """A request that does not validate, as OpenAI says it: 400 naming the field, or the query
    or path parameter. ``content_type``: the request's, when it sent a body."""
    first = errors[0] if errors else {"loc": (), "msg": "Invalid request"}
    loc = tuple(first.get("loc", ()))
    message = str(first.get("msg", "Invalid request"))
    if loc[:1] and loc[0] in _OUTSIDE_THE_BODY and len(loc) > 1:
        name = str(loc[1])
        return 400, envelope(
            f"Invalid value for '{name}': {message}", "invalid_request_error", param=name
        )
    param = _param(loc, body, first.get("type") == "missing")
    media_type = (content_type or "").split(";")[0].strip().lower()
    if (
        content_type is not None
        and not isinstance(body, dict)
        and media_type != "application/json"
        and not media_type.endswith("+json")
    ):
        # curl's -d sends a form: its JSON was never read as JSON.
        sent = f"sent as '{media_type[:100]}'" if media_type else "sent without one"
        return 400, envelope(
            "The request body must be JSON, sent with 'Content-Type: application/json' "
            f"(this one was {sent}).",
            "invalid_request_error",
        )
    if first.get("type") == "json_invalid" or not isinstance(body, dict):
        # Not a JSON object at all (unparsable, empty, an array...): nothing to name.
        return 400, envelope(
            f"We could not parse the JSON body of your request as an object. ({message})",
            "invalid_request_error",
        )
    message = f"Invalid value for '{param}': {message}" if param else message
    return 400, envelope(message, "invalid_request_error", param=param)


def install_error_handlers(app: FastAPI) -> None:
    """Every error leaves as OpenAI's envelope; never a traceback."""

    async def on_domain(request: Request, exc: Exception) -> JSONResponse:
        status, body = error_response_body(exc)
        return JSONResponse(body, status_code=status)

    async def on_validation(request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, RequestValidationError)
        content_type = request.headers.get("content-type", "") if exc.body is not None else None
        status, body = validation_error(list(exc.errors()), exc.body, content_type)
        return JSONResponse(body, status_code=status)

    async def on_http(request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, StarletteHTTPException)
        code = "not_found" if exc.status_code == 404 else None
        return JSONResponse(
            envelope(str(exc.detail), "invalid_request_error", code=code),
            status_code=exc.status_code,
        )

    _openapi = app.openapi

    def openapi_without_422() -> dict[str, Any]:
        """FastAPI documents a 422 we never send (validation errors are OpenAI's 400)."""
        schema = _openapi()
        for path in schema.get("paths", {}).values():
            for operation in path.values():
                operation.get("responses", {}).pop("422", None)
        return schema

    app.openapi = openapi_without_422  # type: ignore[method-assign]
    app.add_exception_handler(RequestValidationError, on_validation)
    app.add_exception_handler(StarletteHTTPException, on_http)
    app.add_exception_handler(ToolbridgeError, on_domain)
    app.add_exception_handler(Exception, on_domain)
