"""Model calls: OpenAI-compatible deployments directly (``app/llm/direct.py``), every other
through ``litellm.Router`` (this is the only module that imports litellm).

Streamed or not, a call yields the same ``ModelChunk`` values, so the engine has one path.
litellm's exceptions are translated here, once, into ``UpstreamModelError``/``ModelNotFound``.
"""

from __future__ import annotations

import functools
import importlib.util
import logging
import operator
import os
from collections.abc import AsyncIterator, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import orjson

from app.config import ModelEntry
from app.errors import ModelNotFound
from app.llm.direct import Deployment, DirectClient
from app.llm.errors import chain, could_not_connect, provider_error, timed_out

if TYPE_CHECKING:
    from types import ModuleType

    from litellm.router import Router


@functools.cache
def _litellm() -> ModuleType:
    """litellm, imported on first use: it takes seconds and ~100 MB, and a service whose models
    are all called directly (``app/llm/direct.py``) never needs it."""
    os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")  # no price-map download
    import litellm

    litellm.suppress_debug_info = True
    for name in ("LiteLLM", "LiteLLM Router", "LiteLLM Proxy", "litellm"):
        logging.getLogger(name).setLevel(logging.WARNING)
    return litellm


Message = dict[str, Any]
"""A message in OpenAI's Chat Completions format: the conversation's lingua franca."""


DEFAULT_MAX_TOOLS = 128
"""Tools one model call may offer unless ``model_info.max_tools`` says otherwise: OpenAI's
limit (a request with more is refused by the provider)."""


@dataclass(frozen=True, slots=True)
class ToolCallDelta:
    """A piece of one tool call; ``id`` and ``name`` come with the first piece."""

    index: int
    id: str | None = None
    name: str | None = None
    arguments: str = ""


@dataclass(frozen=True, slots=True)
class Usage:
    """Tokens of one model call."""

    prompt_tokens: int = 0
    completion_tokens: int = 0
    cached_tokens: int = 0
    reasoning_tokens: int = 0


@dataclass(frozen=True, slots=True)
class Prices:
    """USD per token."""

    input: float
    output: float


@dataclass(slots=True)
class ModelChunk:
    """What arrived from the model: text, tool-call pieces, and at the end reason and usage.

    Not frozen, though never changed: one is made per streamed token, and a frozen
    dataclass's ``__init__`` (``object.__setattr__`` per field) took 4x as long."""

    text: str = ""
    tool_calls: tuple[ToolCallDelta, ...] = ()
    finish_reason: str | None = None
    usage: Usage | None = None


class MessagesJson:
    """A run's messages as JSON, kept from one model call to the next, so that each call
    encodes only the messages added since the last one. Encoding walks every message, and by
    the next call a long history is cold in memory: 240 messages took 80 µs to encode again
    (profiled), where joining the bytes kept takes a few. Messages already sent are never
    changed in place (the run only adds and inserts); any other change is re-encoded."""

    __slots__ = ("_array", "_sent")

    def __init__(self) -> None:
        self._sent: list[Message] = []
        """The messages ``_array`` encodes, in order (held: their ids must stay theirs)."""
        self._array = b"[]"
        """Their JSON array."""

    @classmethod
    def of(cls, messages: list[Message]) -> MessagesJson:
        """``messages`` encoded now (while they are fresh in memory: a tenth of the CPU)."""
        encoded = cls()
        encoded.add(messages)
        return encoded

    def add(self, messages: list[Message]) -> None:
        """Encode what ``messages`` added since the last call (all of them if they changed)."""
        kept = len(self._sent)
        if kept > len(messages) or not all(map(operator.is_, self._sent, messages)):
            kept, self._array = 0, b"[]"
        if added := messages[kept:]:
            more = orjson.dumps(added)
            # The kept array without its "]", then the added items after a comma: one copy.
            self._array = (
                b"".join((memoryview(self._array)[:-1], b",", memoryview(more)[1:]))
                if kept
                else more
            )
            self._sent = list(messages)

    def array(self, messages: list[Message]) -> orjson.Fragment:
        """``messages`` as a JSON array, to embed as it is in a request's JSON."""
        self.add(messages)
        return orjson.Fragment(self._array)


@dataclass(frozen=True, slots=True)
class ModelCall:
    """One request to the model."""

    model: str
    messages: list[Message]
    tools: list[dict[str, Any]] = field(default_factory=list)
    params: dict[str, Any] = field(default_factory=dict)
    """OpenAI sampling parameters passed through (temperature, max_tokens, tool_choice, ...)."""
    encoded: MessagesJson | None = None
    """The run's messages encoded so far, for a call that skips litellm; None: encode all."""


def _openai_model_info(name: str) -> dict[str, Any] | None:
    """What ``litellm.get_model_info("openai/<name>")`` answers (a test compares the two for
    every name in the map), read from litellm's price map as data: a process whose models are
    all called directly then never imports litellm (seconds on the first call, ~100 MB)."""
    prices = _price_map()
    found = prices.get(f"openai/{name}") or prices.get(name)
    return found if found and found.get("litellm_provider") == "openai" else None


@functools.cache
def _price_map() -> dict[str, Any]:
    """litellm's bundled price map (what ``LITELLM_LOCAL_MODEL_COST_MAP`` makes it use). Its
    place in the package is not litellm's API: the comparison test finds a move."""
    spec = importlib.util.find_spec("litellm")  # finds the package without importing it
    if spec is None or spec.origin is None:
        return {}
    path = Path(spec.origin).parent / "model_prices_and_context_window_backup.json"
    loaded: dict[str, Any] = orjson.loads(path.read_bytes())
    return loaded


@contextmanager
def _translate_errors(model: str) -> Iterator[None]:
    """Re-raise litellm's errors as ours, with the provider's status where it has one."""
    import openai  # imported by litellm: free here

    exceptions = _litellm().exceptions
    try:
        yield
    except exceptions.NotFoundError as exc:
        raise provider_error(model, "model not found at the provider", 404) from exc
    except Exception as exc:  # boundary: everything litellm or the provider can raise
        if not isinstance(exc, openai.OpenAIError):
            raise
        # litellm may wrap a timeout or a refused connection in another class (a refused
        # connection arrives as its InternalServerError, 500): what happened is underneath.
        below = chain(exc)
        if any(isinstance(e, openai.APITimeoutError | TimeoutError) for e in below):
            raise timed_out(model) from exc
        if any(isinstance(e, openai.APIConnectionError) for e in below):
            raise could_not_connect(model, exc) from exc
        detail = str(exc).split("\n", 1)[0][:300]
        raise provider_error(model, detail, getattr(exc, "status_code", None)) from exc


def _usage(raw: dict[str, Any] | None) -> Usage | None:
    if not raw:
        return None
    prompt_details = raw.get("prompt_tokens_details") or {}
    completion_details = raw.get("completion_tokens_details") or {}
    return Usage(
        prompt_tokens=raw.get("prompt_tokens") or 0,
        completion_tokens=raw.get("completion_tokens") or 0,
        cached_tokens=prompt_details.get("cached_tokens") or 0,
        reasoning_tokens=completion_details.get("reasoning_tokens") or 0,
    )


def _tool_deltas(raw_calls: list[dict[str, Any]] | None) -> tuple[ToolCallDelta, ...]:
    if not raw_calls:
        return ()  # a text token's chunk
    deltas = []
    for position, call in enumerate(raw_calls):
        function = call.get("function") or {}
        index = call.get("index")
        deltas.append(
            ToolCallDelta(
                index=position if index is None else index,
                id=call.get("id"),
                name=function.get("name"),
                arguments=function.get("arguments") or "",
            )
        )
    return tuple(deltas)


def _chunk(choice: dict[str, Any], part: dict[str, Any], usage: Usage | None) -> ModelChunk:
    """A choice's message (whole) or delta (streamed) as a chunk."""
    return ModelChunk(
        text=part.get("content") or "",
        tool_calls=_tool_deltas(part.get("tool_calls")),
        finish_reason=choice.get("finish_reason"),
        usage=usage,
    )


def _whole(response: dict[str, Any]) -> ModelChunk:
    """A whole completion (OpenAI's JSON) as one chunk."""
    choice = response["choices"][0]
    return _chunk(choice, choice.get("message") or {}, _usage(response.get("usage")))


def _piece(chunk: dict[str, Any]) -> ModelChunk:
    """A streamed chunk (OpenAI's JSON)."""
    usage = _usage(chunk.get("usage"))
    if not chunk.get("choices"):
        return ModelChunk(usage=usage)
    choice = chunk["choices"][0]
    return _chunk(choice, choice.get("delta") or {}, usage)


class ModelClient:
    """The configured models: called directly, or behind one litellm Router."""

    def __init__(
        self,
        models: list[ModelEntry],
        *,
        num_retries: int,
        timeout_s: float,
        direct: bool = True,
    ) -> None:
        self._names = list(dict.fromkeys(m.model_name for m in models))
        self._entries = {m.model_name: m for m in reversed(models)}  # the first one wins
        self._prices: dict[str, Prices | None] = {}
        self._direct_client = DirectClient(num_retries=num_retries)
        self._direct: dict[str, Deployment] = {}
        """Models called without litellm: one OpenAI-compatible deployment (several would need
        the Router's load balancing)."""
        for name in self._names if direct else ():
            deployments = [m for m in models if m.model_name == name]
            if len(deployments) == 1:
                deployment = Deployment.of(deployments[0].litellm_params, timeout_s)
                if deployment is not None:
                    self._direct[name] = deployment
        routed = [m for m in models if m.model_name not in self._direct]
        self._router: Router | None = (
            _litellm().Router(
                model_list=[m.model_dump() for m in routed],
                num_retries=num_retries,
                timeout=timeout_s,
            )
            if routed
            else None
        )

    async def aclose(self) -> None:
        await self._direct_client.aclose()

    def is_direct(self, model: str) -> bool:
        """Whether calls to ``model`` skip litellm."""
        return model in self._direct

    def names(self) -> list[str]:
        return list(self._names)

    def entries(self) -> list[ModelEntry]:
        """One entry per model name, in configuration order."""
        return [self._entries[name] for name in self._names]

    def prices(self, model: str) -> Prices | None:
        """USD per token: ``model_info`` first, then litellm's price map; None if unknown.

        Looked up once per model: the configuration is fixed and every model call asks."""
        if model not in self._prices:
            self._prices[model] = self._look_up_prices(model)
        return self._prices[model]

    def _look_up_prices(self, model: str) -> Prices | None:
        entry = self._entries.get(model)
        if entry is None:
            return None
        info = entry.model_info
        if "input_cost_per_token" in info or "output_cost_per_token" in info:
            return Prices(
                float(info.get("input_cost_per_token", 0.0)),
                float(info.get("output_cost_per_token", 0.0)),
            )
        deployment = self._direct.get(model)
        if deployment is not None:
            known = _openai_model_info(deployment.model)
        else:
            try:
                known = _litellm().get_model_info(str(entry.litellm_params.get("model", "")))
            except Exception:  # noqa: BLE001 - litellm raises bare Exception for unknown models
                return None
        if known is None:
            return None
        return Prices(
            float(known.get("input_cost_per_token") or 0.0),
            float(known.get("output_cost_per_token") or 0.0),
        )

    def max_tools(self, model: str) -> int:
        """Tools one call to ``model`` may offer: ``model_info.max_tools``, else OpenAI's limit."""
        entry = self._entries.get(model)
        value = entry.model_info.get("max_tools") if entry is not None else None
        return int(value) if value is not None else DEFAULT_MAX_TOOLS

    def cost_usd(self, model: str, usage: Usage) -> float:
        prices = self.prices(model)
        if prices is None:
            return 0.0
        return usage.prompt_tokens * prices.input + usage.completion_tokens * prices.output

    def check(self, model: str) -> None:
        """Raise ``ModelNotFound`` unless ``model`` is configured."""
        if model not in self._names:
            raise ModelNotFound(model)

    async def complete(self, call: ModelCall, *, stream: bool) -> AsyncIterator[ModelChunk]:
        """Call the model; streamed or not, yield chunks ending with finish reason and usage."""
        self.check(call.model)
        kwargs: dict[str, Any] = {**call.params, "model": call.model, "messages": call.messages}
        if call.tools:
            kwargs["tools"] = call.tools
        deployment = self._direct.get(call.model)
        if deployment is not None:
            body = {k: v for k, v in kwargs.items() if k != "model"}
            if call.encoded is not None:
                body["messages"] = call.encoded.array(call.messages)
            if not stream:
                yield _whole(await self._direct_client.complete(deployment, call.model, body))
                return
            async for piece in self._direct_client.stream(deployment, call.model, body):
                yield _piece(piece)
            return
        assert self._router is not None, "every model not called directly is routed"
        with _translate_errors(call.model):
            if not stream:
                response = await self._router.acompletion(**kwargs)
                yield _whole(response.model_dump())
                return
            chunks = await self._router.acompletion(
                **kwargs, stream=True, stream_options={"include_usage": True}
            )
            async for chunk in chunks:
                yield _piece(chunk.model_dump())
