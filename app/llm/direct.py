"""OpenAI-compatible deployments called directly (aiohttp + orjson), without litellm.

litellm's own work costs several milliseconds of CPU per model call (profiled in
``make bench``: ``floor+litellm`` against ``floor``), and a toolbridge run makes at least two.
A deployment whose provider already speaks OpenAI's Chat Completions (``openai/<model>`` with
an ``api_base``, nothing else litellm would have to translate) gains nothing from that work,
so it is called here with the same results: the same chunks and usage, retries of what a
retry can fix, the provider's status on errors. Every other deployment goes through
``litellm.Router`` (``app/llm/client.py``).

The HTTP client is aiohttp, not httpx2: on the bench's model call it costs 0.3 ms of CPU where
httpx2 costs 1.2 ms (``docs/performance.md``), and a run makes at least two calls.
"""

from __future__ import annotations

import random
import ssl
import urllib.request
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass, field
from functools import cache, lru_cache
from typing import Any

import aiohttp
import anyio
import certifi
import orjson

from app.llm.errors import could_not_connect, provider_error, timed_out

PREFIX = "openai/"
"""litellm's provider prefix for any OpenAI-compatible endpoint."""
SUPPORTED_PARAMS = frozenset({"model", "api_base", "api_key", "timeout", "organization"})
"""``litellm_params`` this path honours; a deployment with any other goes through litellm."""
RETRYABLE = frozenset({408, 409, 429, 500, 502, 503, 504})
BACKOFF_S = (0.5, 8.0)
"""First retry delay and the longest one (doubling, with jitter; ``Retry-After`` wins)."""


@dataclass(frozen=True, slots=True)
class Deployment:
    """Where a model lives: ``{base_url}/chat/completions``, as ``model``."""

    base_url: str
    model: str
    headers: Mapping[str, str] = field(repr=False)  # the API key: never in a log line
    timeout_s: float

    @classmethod
    def of(cls, params: Mapping[str, Any], timeout_s: float) -> Deployment | None:
        """The direct deployment for these ``litellm_params``, or None if litellm is needed."""
        model, base = params.get("model"), params.get("api_base")
        if not (isinstance(model, str) and model.startswith(PREFIX) and isinstance(base, str)):
            return None
        if not set(params) <= SUPPORTED_PARAMS:
            return None
        headers = {"Content-Type": "application/json"}
        if params.get("api_key"):
            headers["Authorization"] = f"Bearer {params['api_key']}"
        if params.get("organization"):
            headers["OpenAI-Organization"] = str(params["organization"])
        timeout = float(params.get("timeout") or timeout_s)
        return cls(base.rstrip("/"), model.removeprefix(PREFIX), headers, timeout)


def _detail(body: bytes) -> str:
    """The provider's error message (OpenAI's ``{"error": {"message"}}``), or its start."""
    try:
        error = orjson.loads(body).get("error")
    except (orjson.JSONDecodeError, AttributeError):
        return body[:200].decode(errors="replace")
    message = error.get("message") if isinstance(error, dict) else error
    return str(message)[:300]


def _retry_after_s(response: aiohttp.ClientResponse) -> float | None:
    try:
        return min(float(response.headers["retry-after"]), BACKOFF_S[1])
    except (KeyError, ValueError):
        return None


class DirectClient:
    """Chat Completions requests to OpenAI-compatible deployments, over one connection pool."""

    def __init__(self, *, num_retries: int) -> None:
        self._num_retries = num_retries
        self._session: aiohttp.ClientSession | None = None

    @property
    def _http(self) -> aiohttp.ClientSession:
        """Made on first use, in the event loop that serves (and again after ``aclose``)."""
        if self._session is None:
            tls = ssl.create_default_context(cafile=certifi.where())
            self._session = aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(limit=256, ssl=tls),
                # One pool serves every caller: a cookie one answer set must not ride along
                # with another caller's request (and not keeping them saves a jar lookup a call).
                cookie_jar=aiohttp.DummyCookieJar(),
            )
        return self._session

    async def aclose(self) -> None:
        if self._session is not None:
            session, self._session = self._session, None
            await session.close()

    async def send(
        self, deployment: Deployment, name: str, body: dict[str, Any]
    ) -> aiohttp.ClientResponse:
        """POST the request (retrying what a retry can fix); the open response on success.

        ``name`` is the model's name for callers, used in error messages."""
        payload = orjson.dumps({**body, "model": deployment.model})
        url = f"{deployment.base_url}/chat/completions"
        timeout = _timeout(deployment.timeout_s)
        delay = BACKOFF_S[0]
        for attempt in range(self._num_retries + 1):
            last = attempt == self._num_retries
            try:
                response = await self._http.post(
                    url,
                    data=payload,
                    headers=deployment.headers,
                    timeout=timeout,
                    proxy=_proxy_for(deployment.base_url),
                )
            except TimeoutError as exc:
                if last:
                    raise timed_out(name) from exc
            except aiohttp.ClientError as exc:
                if last:
                    raise could_not_connect(name, exc) from exc
            else:
                if response.status < 400:
                    return response
                try:
                    content = await response.read()
                except (TimeoutError, aiohttp.ClientError):
                    content = b""
                finally:
                    response.release()
                status = response.status
                if last or status not in RETRYABLE:
                    if status == 404:
                        raise provider_error(name, "model not found at the provider", 404)
                    raise provider_error(name, _detail(content), status)
                delay = _retry_after_s(response) or delay
            await anyio.sleep(delay * random.uniform(0.8, 1.2))
            delay = min(delay * 2, BACKOFF_S[1])
        raise AssertionError("unreachable: the last attempt returns or raises")

    async def complete(
        self, deployment: Deployment, name: str, body: dict[str, Any]
    ) -> dict[str, Any]:
        """A whole completion, as the provider's JSON."""
        response = await self.send(deployment, name, body)
        try:
            content = await response.read()
        except TimeoutError as exc:
            raise timed_out(name) from exc
        except aiohttp.ClientError as exc:
            raise provider_error(name, f"the answer broke off ({type(exc).__name__})", 503) from exc
        finally:
            response.release()
        try:
            answer = orjson.loads(content)
        except orjson.JSONDecodeError as exc:
            raise provider_error(name, "the provider's answer is not JSON", 502) from exc
        if not isinstance(answer, dict) or not answer.get("choices"):
            raise provider_error(name, "the provider's answer has no choices", 502)
        return answer

    async def stream(
        self, deployment: Deployment, name: str, body: dict[str, Any]
    ) -> AsyncIterator[dict[str, Any]]:
        """A streamed completion's chunks (server-sent events up to ``[DONE]``)."""
        streamed = {**body, "stream": True, "stream_options": {"include_usage": True}}
        response = await self.send(deployment, name, streamed)
        done = False
        try:
            # Read to the body's end, [DONE] included, so the connection goes back to the pool.
            # Its lines as they arrive (``\n``, ``\r\n`` or ``\r`` ends one), however long;
            # split here, not in a generator of their own: one layer fewer per token.
            pending = b""
            pieces = response.content.iter_any()
            while (piece := await anext(pieces, None)) is not None or pending:
                pending += piece if piece is not None else b"\n"  # at the end: the last line
                if b"\r" in pending:
                    pending = pending.replace(b"\r\n", b"\n").replace(b"\r", b"\n")
                *lines, pending = pending.split(b"\n")
                for line in lines:
                    if done or not line.startswith(b"data:"):
                        continue  # comments, event names, blank separators
                    data = line[5:].strip()
                    if data == b"[DONE]":
                        done = True
                        continue
                    chunk = orjson.loads(data)
                    if isinstance(chunk, dict) and "error" in chunk:
                        raise provider_error(name, _detail(data), None)
                    yield chunk
        except TimeoutError as exc:
            raise provider_error(name, "the stream stalled (timed out)", 504) from exc
        except aiohttp.ClientError as exc:
            raise provider_error(name, f"the stream broke ({type(exc).__name__})", 503) from exc
        finally:
            response.release()  # back to the pool if the body was read to its end, else closed


@lru_cache(maxsize=64)
def _timeout(seconds: float) -> aiohttp.ClientTimeout:
    """Like httpx's timeout: for connecting and for each read, not for the whole answer (a
    long stream is fine as long as it keeps coming). Made once per value (immutable)."""
    return aiohttp.ClientTimeout(total=None, connect=seconds, sock_read=seconds)


@cache
def _proxy_for(url: str) -> str | None:
    """The proxy the environment names for ``url`` (``HTTPS_PROXY``, ``NO_PROXY``...), as httpx
    and the OpenAI SDK honour it; looked up once per base URL (aiohttp's ``trust_env`` looks
    it up, and reads ``~/.netrc``, on every request: 0.6 ms each)."""
    scheme, _, rest = url.partition("://")
    host = rest.split("/", 1)[0].rsplit("@", 1)[-1].split(":", 1)[0]
    if urllib.request.proxy_bypass(host):
        return None
    return urllib.request.getproxies().get(scheme)
