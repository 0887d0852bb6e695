"""Domain errors. They say what went wrong and carry it as fields; they know nothing of HTTP.

``app/api/errors.py`` is the one place that maps them to OpenAI's error envelope and status.
A failing MCP tool is not an error here: it becomes a tool result the model and caller see.
"""

from __future__ import annotations


class ToolbridgeError(Exception):
    """Base of every error that ends a request with a stated reason."""

    def __init__(self, message: str, *, param: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.param = param


class InvalidRequest(ToolbridgeError):
    """The request is malformed or asks for something unsupported."""


class Unauthenticated(ToolbridgeError):
    """No bearer key, or one we do not know."""


class PermissionDenied(ToolbridgeError):
    """The key may not use this model or MCP server."""


class ModelNotFound(ToolbridgeError):
    """The model is not configured."""

    def __init__(self, model: str) -> None:
        super().__init__(
            f"The model '{model}' does not exist or you do not have access to it.", param="model"
        )
        self.model = model


class NotFound(ToolbridgeError):
    """A stored object (response, conversation) that does not exist for this caller."""


class ServerUnreachable(ToolbridgeError):
    """An MCP server whose tools could not be listed (OpenAI answers 424)."""

    def __init__(self, server_label: str, reason: str) -> None:
        super().__init__(
            f"Error retrieving tool list from MCP server: '{server_label}'. {reason}", param="tools"
        )
        self.server_label = server_label
        self.reason = reason


class AuthorizationRequired(ServerUnreachable):
    """An MCP server answered 401: the caller must authorize (OAuth) and send ``authorization``.

    ``resource_metadata`` and ``scope`` are what the server's ``WWW-Authenticate`` said (MCP's
    authorization spec), passed on so a client knows where to start."""

    def __init__(self, server_label: str, resource_metadata: str | None, scope: str | None) -> None:
        how = ""
        if resource_metadata:
            how += f" Its protected resource metadata: {resource_metadata}."
        if scope:
            how += f" Scopes it asks for: {scope}."
        super().__init__(
            server_label,
            "The server requires authorization: obtain a token (OAuth) and send it as the "
            f"tool's 'authorization'.{how}",
        )
        self.resource_metadata = resource_metadata
        self.scope = scope


class UpstreamModelError(ToolbridgeError):
    """The model provider failed; ``status`` is what it (or the connection) said."""

    def __init__(self, message: str, *, status: int | None) -> None:
        super().__init__(message)
        self.status = status


class BudgetExceeded(ToolbridgeError):
    """A spend limit would be passed (OpenAI answers 429 ``insufficient_quota``)."""

    def __init__(self, scope: str, limit_usd: float, left_usd: float | None = None) -> None:
        left = "" if left_usd is None else f" and ${left_usd:.6g} left, not enough for this call"
        super().__init__(f"Budget exceeded: scope '{scope}' has a limit of ${limit_usd:g}{left}.")
        self.scope = scope
        self.limit_usd = limit_usd
        self.left_usd = left_usd


class TooManyRuns(ToolbridgeError):
    """The key has as many runs in progress as it may (OpenAI answers 429 for rate limits)."""

    def __init__(self, limit: int) -> None:
        super().__init__(
            f"This API key has {limit} runs in progress on this server, its limit; "
            "retry when one has finished."
        )
        self.limit = limit


class TooManyBackgroundResponses(ToolbridgeError):
    """The key has as many background responses queued or running as it may (every replica)."""

    def __init__(self, limit: int) -> None:
        super().__init__(
            f"This API key has {limit} background responses queued or running, its limit; "
            "retry when one has finished, or cancel one.",
            param="background",
        )
        self.limit = limit


class ConversationBusy(ToolbridgeError):
    """Another response is running on this conversation (OpenAI's conversation lock)."""

    def __init__(self, conversation_id: str) -> None:
        super().__init__(
            f"Another response is in progress on conversation '{conversation_id}'; retry once "
            "it has finished.",
            param="conversation",
        )


class StorageQuotaExceeded(ToolbridgeError):
    """The key keeps as many stored responses (or bytes of them) as its quotas allow."""

    def __init__(self, count: int, max_count: int, used_bytes: int, max_bytes: int) -> None:
        super().__init__(
            f"Stored responses: this API key keeps {count} responses ({used_bytes} bytes); its "
            f"quotas are {max_count} responses and {max_bytes} bytes. Delete some "
            "(DELETE /v1/responses/{id}), wait for them to expire, or send store: false.",
            param="store",
        )


class StoreUnavailable(ToolbridgeError):
    """Redis could not be reached for state this request needs."""
