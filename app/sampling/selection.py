"""Which of our models answers a sampling request (pure; table-tested).

MCP's ``modelPreferences`` (spec 2025-11-25, "Model Preferences"): ``hints`` are tried in
order and the first that matches wins, matching the exact model name, then a case-insensitive
substring of the model name, its provider model id or an alias, then the operator's
cross-family map (a ``claude`` hint may name one of our models). Without a matching hint,
candidates are scored on cost (cheaper is better), speed and intelligence, weighted by the
request's priorities; ties go to configuration order. No preferences at all: the configured
default sampling model.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import mcp_types as types


@dataclass(frozen=True, slots=True, kw_only=True)
class Candidate:
    """A model this caller may use for sampling."""

    name: str
    provider_model: str = ""
    aliases: tuple[str, ...] = field(default_factory=tuple)
    cost_per_token: float | None = None
    """Input plus output price per token, in USD (None: unknown)."""
    speed: float = 0.5
    """0-1, from ``model_info``."""
    intelligence: float = 0.5
    """0-1, from ``model_info``."""


def _hint_match(hint: str, candidates: Sequence[Candidate]) -> Candidate | None:
    for candidate in candidates:
        if candidate.name == hint:
            return candidate
    needle = hint.lower()
    for candidate in candidates:
        names = (candidate.name, candidate.provider_model, *candidate.aliases)
        if any(needle in name.lower() for name in names):
            return candidate
    return None


def _cost_scores(candidates: Sequence[Candidate]) -> list[float]:
    """1 for the cheapest, 0 for the dearest; unknown prices score in the middle."""
    known = [c.cost_per_token for c in candidates if c.cost_per_token is not None]
    low, high = (min(known), max(known)) if known else (0.0, 0.0)
    scores = []
    for candidate in candidates:
        if candidate.cost_per_token is None or high == low:
            scores.append(0.5)
        else:
            scores.append(1 - (candidate.cost_per_token - low) / (high - low))
    return scores


def select_model(
    preferences: types.ModelPreferences | None,
    candidates: Sequence[Candidate],
    *,
    cross_family: Mapping[str, str] | None = None,
    default: str | None = None,
) -> Candidate | None:
    """The candidate that best fits ``preferences``; None when there are no candidates."""
    if not candidates:
        return None
    by_name = {c.name: c for c in candidates}
    if preferences is None:
        return by_name.get(default or "", candidates[0])
    for hint in preferences.hints or []:
        if not hint.name:
            continue
        if (found := _hint_match(hint.name, candidates)) is not None:
            return found
        for family, model in (cross_family or {}).items():
            if family.lower() in hint.name.lower() and model in by_name:
                return by_name[model]
    weights = (
        preferences.cost_priority or 0.0,
        preferences.speed_priority or 0.0,
        preferences.intelligence_priority or 0.0,
    )
    if not any(weights):
        return by_name.get(default or "", candidates[0])
    costs = _cost_scores(candidates)
    scores = [
        weights[0] * cost + weights[1] * c.speed + weights[2] * c.intelligence
        for c, cost in zip(candidates, costs, strict=True)
    ]
    best = max(scores)
    return candidates[scores.index(best)]  # the first of equals: configuration order
