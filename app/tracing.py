"""OpenTelemetry traces, exported over OTLP/HTTP when ``TOOLBRIDGE_OTLP_ENDPOINT`` is set.

One span per run, model call, MCP tool call and sampling request, with the GenAI semantic
conventions' names and attributes (``gen_ai.operation.name``, ``gen_ai.request.model``,
``gen_ai.usage.*``, ``gen_ai.tool.*``). Nothing secret or private goes into attributes: no
headers, no arguments, no message contents. Spans are never made "current": runs are async
generators, whose suspended frames must not leak a context, so parents are passed explicitly.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager, nullcontext
from typing import Any

from opentelemetry import trace
from opentelemetry.trace import Span, Status, StatusCode

tracer = trace.get_tracer("toolbridge")
_tracing = False
"""Whether a tracer provider was set when the app started (``configure_tracing``)."""


def configure_tracing(endpoint: str | None) -> None:
    """Export to ``endpoint`` (an OTLP/HTTP collector base URL); no endpoint, no tracing, unless
    the operator's own instrumentation set a tracer provider before the app started."""
    global _tracing
    if endpoint:
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import (
            OTLPSpanExporter,
        )
        from opentelemetry.sdk.resources import Resource
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import BatchSpanProcessor

        provider = TracerProvider(resource=Resource.create({"service.name": "toolbridge"}))
        exporter = OTLPSpanExporter(endpoint=f"{endpoint.rstrip('/')}/v1/traces")
        provider.add_span_processor(BatchSpanProcessor(exporter))
        trace.set_tracer_provider(provider)
    # OpenTelemetry sets a provider once and for all; asking it on every span reads the
    # environment each time, so it is asked here, once.
    _tracing = not isinstance(trace.get_tracer_provider(), trace.ProxyTracerProvider)


def tracing() -> bool:
    """Whether spans go anywhere (``configure_tracing`` found a tracer provider). Until one is
    set, OpenTelemetry's spans record nothing."""
    return _tracing


def span(
    name: str, attributes: dict[str, Any], parent: Span | None = None
) -> AbstractContextManager[Span]:
    """A span that ends when the block does; an exception marks it as an error. Without a
    provider, the invalid span at once (a run's four no-op spans cost 11 us of CPU)."""
    if not tracing():
        return nullcontext(trace.INVALID_SPAN)
    return _span(name, attributes, parent)


@contextmanager
def _span(name: str, attributes: dict[str, Any], parent: Span | None) -> Iterator[Span]:
    context = trace.set_span_in_context(parent) if parent is not None else None
    current = tracer.start_span(name, context=context, attributes=attributes)
    try:
        yield current
    except BaseException as exc:
        current.set_status(Status(StatusCode.ERROR, type(exc).__name__))
        raise
    finally:
        current.end()
