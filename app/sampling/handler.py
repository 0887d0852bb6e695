"""Answering one run's sampling requests: policy, limits, model choice, the call, the usage.

Policy is decided before any connection (the capability is declared only where sampling is
allowed); here each request is checked against the run's and the tool call's counts and the
server's rate (shared by every replica), then answered by the model ``selection`` picks among
those the caller may use. Every refusal is an error answer the server can handle, a WARNING
in our logs (server and reason, never the prompt) and a note the caller sees on the call.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from urllib.parse import urlsplit

import anyio
import mcp_types as types
from opentelemetry.trace import Span

from app.budget.ledger import Ledger, Scope
from app.budget.scopes import estimate, server_scope
from app.config import SamplingSettings
from app.errors import BudgetExceeded
from app.llm.client import ModelCall, ModelClient, Usage
from app.mcp.features.notes import Note, Sampled, SamplingDeclined
from app.mcp.servers import ServerSpec
from app.metrics import SAMPLING, server_label
from app.principal import Principal
from app.sampling.convert import to_chat, to_result
from app.sampling.selection import Candidate, select_model
from app.store.rate import RateLimiter
from app.tracing import span

logger = logging.getLogger(__name__)


class SamplingRefused(Exception):
    """A sampling request we will not answer; the message goes back to the server."""


@dataclass
class SamplingUsage:
    """What a run's sampling used, for the caller (``usage.sampling``)."""

    requests: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cost_usd: float = 0.0

    def add(self, prompt_tokens: int, completion_tokens: int, cost_usd: float) -> None:
        self.prompt_tokens += prompt_tokens
        self.completion_tokens += completion_tokens
        self.cost_usd += cost_usd


@dataclass
class RunSampling:
    """Sampling for one run: shared counts and usage, one ``ServerCallbacks`` per server."""

    principal: Principal
    models: ModelClient
    settings: SamplingSettings
    rates: RateLimiter
    ledger: Ledger
    scopes: list[Scope]
    """The run's budgets (the caller's key, the run); a server's own is added per server."""
    min_output_tokens: int = 16
    """A sampling call the budget left cannot give this many output tokens is refused."""
    parent_span: Span | None = None
    """The run's trace span."""
    usage: SamplingUsage = field(default_factory=SamplingUsage)

    def sampler_for(self, spec: ServerSpec) -> _ServerSampler | None:
        """Answers ``spec``'s sampling requests in this run; None where it may not sample."""
        return _ServerSampler(self, spec) if spec.sampling else None

    def candidates(self) -> list[Candidate]:
        """Models the caller may use that are enabled for sampling (``model_info.sampling``)."""
        found = []
        for entry in self.models.entries():
            info = entry.model_info
            if not info.get("sampling") or not self.principal.may_use_model(entry.model_name):
                continue
            prices = self.models.prices(entry.model_name)
            found.append(
                Candidate(
                    name=entry.model_name,
                    provider_model=str(entry.litellm_params.get("model", "")),
                    aliases=tuple(info.get("aliases", ())),
                    cost_per_token=None if prices is None else prices.input + prices.output,
                    speed=float(info.get("speed", 0.5)),
                    intelligence=float(info.get("intelligence", 0.5)),
                )
            )
        return found


@dataclass
class _ServerSampler:
    run: RunSampling
    spec: ServerSpec

    def _rate_bucket(self) -> str:
        """Per caller key and per server: a registered server by its label, any other by its
        origin (so ``?x=N`` or another path is no fresh bucket, and no key uses another's)."""
        server = f"label:{self.spec.label}"
        if not self.spec.registered:
            parts = urlsplit(self.spec.target())
            server = f"origin:{parts.scheme}://{parts.netloc.rpartition('@')[2].lower()}"
        return f"sampling:{self.run.principal.key_id}:{server}"

    @property
    def _metric_server(self) -> str:
        return server_label(self.spec.label, registered=self.spec.registered)

    async def sample(
        self, params: types.CreateMessageRequestParams, notes: list[Note], nth_in_call: int
    ) -> types.CreateMessageResult | types.CreateMessageResultWithTools | types.ErrorData:
        try:
            candidate = await self._admit(params, nth_in_call)
            result, usage = await self._call(candidate, params)
        except SamplingRefused as refused:
            SAMPLING.labels(self._metric_server, "-", "refused").inc()
            logger.warning(
                "sampling request refused: server=%s reason=%s", self.spec.label, refused
            )
            notes.append(SamplingDeclined(reason=str(refused)))
            return types.ErrorData(code=types.INVALID_REQUEST, message=str(refused))
        SAMPLING.labels(self._metric_server, candidate.name, "ok").inc()
        cost = self.run.models.cost_usd(candidate.name, usage)
        self.run.usage.add(usage.prompt_tokens, usage.completion_tokens, cost)
        notes.append(
            Sampled(
                model=candidate.name,
                prompt_tokens=usage.prompt_tokens,
                completion_tokens=usage.completion_tokens,
                cost_usd=cost,
            )
        )
        return result

    async def _admit(self, params: types.CreateMessageRequestParams, nth_in_call: int) -> Candidate:
        settings, usage = self.run.settings, self.run.usage
        if nth_in_call > settings.max_per_tool_call:
            raise SamplingRefused(
                f"sampling limit reached: {settings.max_per_tool_call} requests per tool call"
            )
        if usage.requests >= settings.max_per_run:
            raise SamplingRefused(
                f"sampling limit reached: {settings.max_per_run} requests per run"
            )
        usage.requests += 1
        limit = self.spec.sampling_rate_per_minute or settings.rate_per_minute
        if not await self.run.rates.allow(self._rate_bucket(), limit):
            raise SamplingRefused(
                f"sampling rate limit reached: {limit} requests per minute for this server"
            )
        candidate = select_model(
            params.model_preferences,
            self.run.candidates(),
            cross_family=settings.cross_family,
            default=settings.default_model,
        )
        if candidate is None:
            raise SamplingRefused("no model is available for sampling to this caller")
        return candidate

    async def _call(
        self, candidate: Candidate, params: types.CreateMessageRequestParams
    ) -> tuple[types.CreateMessageResult | types.CreateMessageResultWithTools, Usage]:
        max_tokens = min(params.max_tokens, self.run.settings.max_tokens_cap)
        messages, tools, extra = to_chat(params, max_tokens)
        models = self.run.models
        scopes = self.run.scopes + server_scope(self.spec.label, self.spec.sampling_budget_usd)
        cost = estimate(
            models.prices(candidate.name),
            messages,
            tools,
            max_tokens=max_tokens,
            min_tokens=self.run.min_output_tokens,
        )
        attributes = {
            "gen_ai.operation.name": "chat",
            "gen_ai.request.model": candidate.name,
            "toolbridge.sampling.server_label": self.spec.label,
        }
        try:
            with span(f"chat {candidate.name}", attributes, parent=self.run.parent_span) as s:
                async with self.run.ledger.hold(scopes, cost) as hold:
                    # maxTokens is always sent; the budget left may lower it further.
                    extra["max_tokens"] = hold.max_tokens
                    call = ModelCall(candidate.name, messages, tools, extra)
                    with anyio.fail_after(self.run.settings.timeout_s):
                        chunks = [c async for c in models.complete(call, stream=False)]
                    usage = chunks[0].usage or Usage()
                    hold.cost_usd = models.cost_usd(candidate.name, usage)
                    hold.check_output(candidate.name, usage.completion_tokens)
                s.set_attribute("gen_ai.usage.input_tokens", usage.prompt_tokens)
                s.set_attribute("gen_ai.usage.output_tokens", usage.completion_tokens)
        except BudgetExceeded as exc:
            raise SamplingRefused(f"over budget: {exc.message}") from None
        except TimeoutError:
            raise SamplingRefused(
                f"sampling timed out after {self.run.settings.timeout_s:g}s"
            ) from None
        except Exception as exc:  # noqa: BLE001 - boundary: the model's failure goes back
            raise SamplingRefused(f"the model failed: {exc}") from None
        chunk = chunks[0]
        calls = [
            {"id": d.id, "function": {"name": d.name, "arguments": d.arguments}}
            for d in chunk.tool_calls
        ]
        result = to_result(
            candidate.name, chunk.text, calls, chunk.finish_reason, with_tools=bool(params.tools)
        )
        return result, chunk.usage or Usage()
