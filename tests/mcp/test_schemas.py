"""Values checked against a server's schemas: by Rust first (``jsonschema-rs``), by
``jsonschema`` for the error; the two agree where it matters, and ``jsonschema`` judges."""

from __future__ import annotations

import time
from typing import Any

import pytest

from app.mcp.schemas import Checker, validator_for

SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        "city": {"type": "string", "minLength": 2},
        "days": {"type": "integer", "maximum": 14},
        "tags": {"type": "array", "items": {"type": "string"}},
    },
    "required": ["city"],
    "additionalProperties": False,
}


def _errors(checker: Checker, value: Any) -> list[str]:
    return [error.message for error in checker.iter_errors(value)]


@pytest.mark.parametrize(
    ("value", "wrong"),
    [
        ({"city": "Oslo", "days": 3, "tags": ["a"]}, None),
        ({"city": "Oslo", "days": 3.0}, None),  # an integer, as JSON Schema counts them
        ({"city": "O"}, "is too short"),
        ({"city": "Oslo", "days": 15}, "is greater than the maximum of 14"),
        ({"city": "Oslo", "days": True}, "is not of type 'integer'"),
        ({"city": "Oslo", "tags": [1]}, "is not of type 'string'"),
        ({"city": "Oslo", "extra": 1}, "Additional properties are not allowed"),
        ({}, "'city' is a required property"),
    ],
)
def test_what_is_valid_and_why_not(value: dict[str, Any], wrong: str | None) -> None:
    """Rust's answer and ``jsonschema``'s message: a valid value has no error, an invalid one
    has ``jsonschema``'s own."""
    checker = validator_for(SCHEMA)
    assert checker._valid is not None  # the Rust side compiled this schema
    errors = _errors(checker, value)
    if wrong is None:
        assert errors == []
    else:
        assert errors and wrong in errors[0]


def test_a_pattern_rust_cannot_run_is_left_to_jsonschema_which_leaves_it_to_the_server() -> None:
    """A lookahead compiles on neither linear engine: the schema is checked by ``jsonschema``
    alone, its pattern unchecked, the rest checked."""
    schema = {
        "type": "object",
        "properties": {
            "code": {"type": "string", "pattern": "^(?=x)x+$"},
            "n": {"type": "integer"},
        },
    }
    checker = validator_for(schema)
    assert checker._valid is None
    assert _errors(checker, {"code": "yyy"}) == []
    assert "is not of type 'integer'" in _errors(checker, {"n": "two"})[0]


def test_jsonschema_judges_when_the_two_disagree() -> None:
    """A pattern longer than ``jsonschema``'s bound is not checked there; Rust checks it and
    finds the value invalid. ``jsonschema`` finds nothing wrong, so the value passes, as it
    did before the Rust check."""
    long = "^a" + "(b|c)?" * 1000 + "$"
    checker = validator_for({"type": "string", "pattern": long})
    assert checker._valid is not None and not checker._valid.is_valid("zzz")
    assert _errors(checker, "zzz") == []


def test_a_value_rust_cannot_take_is_judged_by_jsonschema() -> None:
    """A value of no JSON type (a dict with an int key, which no JSON parser makes) makes Rust
    raise: ``jsonschema`` judges it instead of the check failing."""
    checker = validator_for({"type": "object"})
    assert checker._valid is not None
    with pytest.raises(ValueError, match="Dict key must be str"):
        checker._valid.is_valid({1: 2})
    assert _errors(checker, {1: 2}) == []
    assert "is not of type 'object'" in _errors(validator_for({"type": "object"}), {3})[0]


def test_a_catastrophic_pattern_stays_linear() -> None:
    checker = validator_for({"type": "string", "pattern": "^(a+)+$"})
    started = time.monotonic()
    assert _errors(checker, "a" * 50_000 + "!")
    assert _errors(checker, "a" * 50_000) == []
    assert time.monotonic() - started < 1
