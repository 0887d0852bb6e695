"""Tool names the model sees: ``<server_label>__<tool>``, within OpenAI's function-name rule.

OpenAI accepts ``^[a-zA-Z0-9_-]{1,64}$``. MCP tool names may hold dots, slashes or be long,
so names are sanitised; a name that is too long, or collides with one already taken, gets a
short hash of its original (label, tool) pair. The result depends only on the input order, so
the same servers give the same names on every replica and every turn.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable

MAX_NAME = 64
SEPARATOR = "__"
_INVALID = re.compile(r"[^a-zA-Z0-9_-]")
_HASH_LEN = 8


def _digest(label: str, tool: str) -> str:
    return hashlib.sha256(f"{label}\0{tool}".encode()).hexdigest()[:_HASH_LEN]


def exposed_name(label: str, tool: str, taken: set[str]) -> str:
    """The model-facing name for ``tool`` of server ``label``, unique among ``taken``."""
    name = _INVALID.sub("_", f"{label}{SEPARATOR}{tool}")
    if len(name) <= MAX_NAME and name not in taken:
        return name
    suffix = f"_{_digest(label, tool)}"
    name = name[: MAX_NAME - len(suffix)] + suffix
    counter = 1
    while name in taken:  # a hash collision too: extremely unlikely, still deterministic
        tail = f"{suffix}{counter}"
        name = name[: MAX_NAME - len(tail)] + tail
        counter += 1
    return name


def build_name_map(
    pairs: Iterable[tuple[str, str]], reserved: Iterable[str] = ()
) -> dict[str, tuple[str, str]]:
    """Map each model-facing name to its (label, tool); ``reserved`` names are never used."""
    taken = set(reserved)
    mapping: dict[str, tuple[str, str]] = {}
    for label, tool in pairs:
        name = exposed_name(label, tool, taken)
        taken.add(name)
        mapping[name] = (label, tool)
    return mapping
