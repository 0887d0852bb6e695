"""Why a server or a call failed, in words safe to show the caller (no URLs with credentials,
no headers, no content)."""

from __future__ import annotations

import re

import httpx2
from mcp.client.auth.exceptions import OAuthFlowError
from mcp.shared.exceptions import MCPError

from app.mcp.results import truncate
from app.mcp.transport.http import ResponseTooLarge
from app.mcp.transport.oauth import auth_failure_text

RESULT_CHECK = re.compile(
    r"^(Invalid structured content returned by tool |Invalid schema for tool |"
    r"Tool \S+ has an output schema but did not return structured content)"
)
"""The SDK's ``validate_tool_result`` failures (``RuntimeError``, its documented contract)."""


def describe_failure(exc: BaseException) -> str:
    """A reason safe to show the caller: no URLs with credentials, no headers."""
    while isinstance(exc, BaseExceptionGroup) and exc.exceptions:
        exc = exc.exceptions[0]
    match exc:
        case MCPError():
            return f"MCP error {exc.code}: {exc.error.message}"
        case httpx2.HTTPStatusError():
            return f"the server answered HTTP {exc.response.status_code}"
        case ResponseTooLarge():
            return str(exc)  # the bound, never the content
        case OAuthFlowError():
            return auth_failure_text(exc)
        case RuntimeError() if RESULT_CHECK.match(str(exc)):
            return truncate(str(exc), 500)  # the schema's complaint, cut
        case TimeoutError():
            return "timed out"
        case httpx2.TimeoutException():
            return "timed out"
        case httpx2.HTTPError() | OSError():
            return f"could not connect ({type(exc).__name__})"
    return f"{type(exc).__name__}"
