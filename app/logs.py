"""Structured JSON logs, each line carrying the request id of the request it belongs to."""

from __future__ import annotations

import contextvars
import json
import logging
import time

from app.redact import redact_urls

request_id: contextvars.ContextVar[str | None] = contextvars.ContextVar("request_id", default=None)
"""The current request's id (``X-Request-ID``), set by the API middleware."""


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time, level, logger, message, request id, exception."""

    def format(self, record: logging.LogRecord) -> str:
        entry = {
            "ts": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
            + f".{int(record.msecs):03d}Z",
            "level": record.levelname,
            "logger": record.name,
            # Libraries log URLs (the mcp SDK logs each server's at DEBUG): their query values
            # and userinfo can be credentials.
            "message": redact_urls(record.getMessage()),
        }
        if (rid := getattr(record, "request_id", None) or request_id.get()) is not None:
            entry["request_id"] = rid
        if (server := getattr(record, "server", None)) is not None:
            entry["server"] = server  # an MCP server's label, e.g. on its stderr lines
        if record.exc_info:
            entry["exception"] = redact_urls(self.formatException(record.exc_info))
        return json.dumps(entry, ensure_ascii=False)


def configure_logging(level: str) -> None:
    """Route every logger (ours, uvicorn's, the libraries') through the JSON formatter."""
    handler = logging.StreamHandler()
    handler.setFormatter(JsonFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    for name in ("uvicorn", "uvicorn.error", "uvicorn.access"):
        logging.getLogger(name).handlers[:] = []
        logging.getLogger(name).propagate = True
    # One line per outgoing MCP HTTP request is noise at INFO.
    logging.getLogger("httpx2").setLevel(max(logging.WARNING, root.level))
