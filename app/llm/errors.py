"""How a model provider's failure reads to callers, on either path (direct or litellm): the
same status and the same words, whichever client met it."""

from __future__ import annotations

from app.errors import UpstreamModelError


def provider_error(model: str, detail: str, status: int | None) -> UpstreamModelError:
    return UpstreamModelError(f"Model provider error for '{model}': {detail}", status=status)


def timed_out(model: str) -> UpstreamModelError:
    return provider_error(model, "the request timed out", 504)


def could_not_connect(model: str, exc: BaseException) -> UpstreamModelError:
    """503, named by the failure at the bottom (``ConnectionRefusedError``, ``gaierror``...):
    the clients in between wrap it differently."""
    return provider_error(model, f"could not connect ({type(chain(exc)[-1]).__name__})", 503)


def chain(exc: BaseException) -> list[BaseException]:
    """``exc`` and every exception under it (``__cause__``, else ``__context__``)."""
    found = [exc]
    while (below := found[-1].__cause__ or found[-1].__context__) is not None:
        if any(below is seen for seen in found):
            break
        found.append(below)
    return found
