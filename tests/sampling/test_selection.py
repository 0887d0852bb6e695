"""Model selection for sampling, table-driven."""

from __future__ import annotations

import mcp_types as types
import pytest

from app.sampling.selection import Candidate, select_model

MODELS = [
    Candidate(
        name="fast-small",
        provider_model="openai/gpt-4o-mini",
        cost_per_token=1e-6,
        speed=0.9,
        intelligence=0.4,
    ),
    Candidate(
        name="smart-big",
        provider_model="anthropic/claude-sonnet-4",
        aliases=("sonnet",),
        cost_per_token=2e-5,
        speed=0.3,
        intelligence=0.95,
    ),
    Candidate(
        name="middle",
        provider_model="openai/gpt-4.1",
        cost_per_token=5e-6,
        speed=0.6,
        intelligence=0.7,
    ),
]
CROSS = {"gemini": "middle"}


def prefs(
    *hints: str,
    cost: float | None = None,
    speed: float | None = None,
    intelligence: float | None = None,
) -> types.ModelPreferences:
    return types.ModelPreferences(
        hints=[types.ModelHint(name=h) for h in hints] or None,
        cost_priority=cost,
        speed_priority=speed,
        intelligence_priority=intelligence,
    )


@pytest.mark.parametrize(
    ("preferences", "expected"),
    [
        (None, "middle"),  # no preferences: the configured default
        (prefs("smart-big"), "smart-big"),  # exact name
        (prefs("CLAUDE"), "smart-big"),  # substring of the provider model, any case
        (prefs("sonnet"), "smart-big"),  # alias
        (prefs("gpt-4o"), "fast-small"),  # substring: first match in config order
        (prefs("gemini-2.5-pro"), "middle"),  # cross-family map
        (prefs("unknown", "smart-big"), "smart-big"),  # hints in order, first match wins
        (prefs("unknown", cost=1.0), "fast-small"),  # no hint matches: cheapest
        (prefs(intelligence=1.0), "smart-big"),
        (prefs(speed=1.0), "fast-small"),
        (prefs(cost=0.5, intelligence=0.5), "middle"),  # 0.5*0.79+0.35 beats the extremes
        (prefs("unknown"), "middle"),  # hints, none matching, no priorities: the default
    ],
)
def test_select_model(preferences: types.ModelPreferences | None, expected: str) -> None:
    chosen = select_model(preferences, MODELS, cross_family=CROSS, default="middle")
    assert chosen is not None and chosen.name == expected


def test_ties_go_to_configuration_order() -> None:
    same = [Candidate(name="a"), Candidate(name="b")]
    chosen = select_model(prefs(speed=1.0), same)
    assert chosen is not None and chosen.name == "a"


def test_no_candidates() -> None:
    assert select_model(prefs("x"), []) is None


def test_cross_family_target_must_be_a_candidate() -> None:
    chosen = select_model(prefs("gemini"), MODELS[:2], cross_family=CROSS, default="fast-small")
    assert chosen is not None and chosen.name == "fast-small"
