"""A request may lower the configured run limits, never raise them."""

from __future__ import annotations

from app.api.schemas import McpLimits
from app.config import Limits


def effective_limits(configured: Limits, requested: McpLimits | None) -> Limits:
    if requested is None:
        return configured
    lowered = {
        name: min(value, getattr(configured, name))
        for name, value in requested.model_dump(exclude_none=True).items()
    }
    return configured.model_copy(update=lowered)
