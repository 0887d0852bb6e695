"""Model-facing tool names: sanitised, prefixed, unique, deterministic, within 64 characters."""

from __future__ import annotations

import re

import pytest

from app.mcp.naming import build_name_map

VALID = re.compile(r"^[a-zA-Z0-9_-]{1,64}$")


@pytest.mark.parametrize(
    ("label", "tool", "expected"),
    [
        ("calc", "add", "calc__add"),
        ("fs", "files.read", "fs__files_read"),
        ("fs", "a/b c", "fs__a_b_c"),
        ("x", "naïve", "x__na_ve"),
    ],
)
def test_names_are_prefixed_and_sanitised(label: str, tool: str, expected: str) -> None:
    assert list(build_name_map([(label, tool)])) == [expected]


def test_collisions_get_distinct_deterministic_names_that_map_back() -> None:
    pairs = [("fs", "read.file"), ("fs", "read_file"), ("fs", "read/file")]
    first = build_name_map(pairs)
    assert build_name_map(pairs) == first
    assert len(first) == 3
    assert all(VALID.match(n) for n in first)
    assert sorted(first.values()) == sorted(pairs)
    assert "fs__read_file" in first  # the first one keeps the plain name


def test_long_names_are_cut_to_64_with_a_hash() -> None:
    long_a, long_b = "t" * 80 + "a", "t" * 80 + "b"
    names = build_name_map([("server", long_a), ("server", long_b)])
    assert all(len(n) == 64 and VALID.match(n) for n in names)
    assert len(set(names)) == 2
    assert set(names.values()) == {("server", long_a), ("server", long_b)}


def test_reserved_client_tool_names_are_never_taken() -> None:
    names = build_name_map([("calc", "add")], reserved=["calc__add"])
    (name,) = names
    assert name != "calc__add"
    assert name.startswith("calc__add_")
