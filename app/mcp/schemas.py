"""JSON Schema checks of what servers and models send, safe against hostile schemas.

A tool's schemas come from its server, and the values checked against them from the model or
the server: neither may stall the event loop or fill memory.

- Regular expressions (``pattern``, ``patternProperties``) run on RE2 (``google-re2``): linear
  time, so ``^(a+)+$`` against ``aaa…a!`` takes microseconds, not minutes. A pattern RE2 cannot
  compile (lookaround, backreferences) is not checked: the server remains the judge of it.
- ``$ref`` resolves within the schema only (an empty registry): a server's schema must never
  make us reach a URL (SEP-2106; an SSRF path around the server_url guard).
- Compiled validators are cached by the schema's hash, at most ``CACHE_ENTRIES`` of them, and
  only for schemas up to ``CACHE_MAX_BYTES`` of JSON; larger ones are compiled per use.
"""

from __future__ import annotations

import functools
import hashlib
import json
from collections import OrderedDict
from collections.abc import Iterator
from typing import Any

import jsonschema
import re2
from jsonschema.protocols import Validator
from referencing import Registry

CACHE_ENTRIES = 256
CACHE_MAX_BYTES = 64 * 1024
_RE2_OPTIONS = re2.Options()
_RE2_OPTIONS.log_errors = False  # a server's bad pattern is not our error to log


@functools.lru_cache(maxsize=1024)
def _compiled(pattern: str) -> Any:
    """The RE2 program for ``pattern``, or None when RE2 cannot run it."""
    try:
        return re2.compile(pattern, _RE2_OPTIONS)
    except re2.error:
        return None


def _pattern(
    validator: Validator, pattern: str, instance: Any, schema: dict[str, Any]
) -> Iterator[jsonschema.ValidationError]:
    if not validator.is_type(instance, "string"):
        return
    program = _compiled(pattern) if len(pattern) <= 4096 else None
    if program is not None and program.search(instance) is None:
        yield jsonschema.ValidationError(f"{instance!r} does not match {pattern!r}")


def _pattern_properties(
    validator: Any, patterns: dict[str, Any], instance: Any, schema: dict[str, Any]
) -> Iterator[jsonschema.ValidationError]:
    if not validator.is_type(instance, "object"):
        return
    for pattern, subschema in patterns.items():
        program = _compiled(pattern) if len(pattern) <= 4096 else None
        if program is None:
            continue
        for key, value in instance.items():
            if program.search(key) is not None:
                yield from validator.descend(value, subschema, path=key, schema_path=pattern)


def _safe(cls: type[Validator]) -> type[Validator]:
    keywords = {"pattern": _pattern, "patternProperties": _pattern_properties}
    extended: type[Validator] = jsonschema.validators.extend(cls, validators=keywords)  # type: ignore[no-untyped-call]
    return extended


_SAFE_CLASSES: dict[type[Validator], type[Validator]] = {}
_cache: OrderedDict[str, Validator] = OrderedDict()


class BrokenSchema(ValueError):
    """The schema itself is not a valid JSON Schema."""


_by_identity: OrderedDict[int, tuple[dict[str, Any], Validator]] = OrderedDict()
"""The same schema object (a warm session's tool) finds its validator without hashing it."""


def validator_for(schema: dict[str, Any]) -> Validator:
    """A linear-time validator for ``schema``; ``BrokenSchema`` when it is not valid."""
    known = _by_identity.get(id(schema))
    if known is not None and known[0] is schema:
        return known[1]
    validator, kept = _validator_for(schema)
    if kept:  # only what the content cache may keep (bounded in size)
        _by_identity[id(schema)] = (schema, validator)  # held: its id is not reused meanwhile
        if len(_by_identity) > CACHE_ENTRIES:
            _by_identity.popitem(last=False)
    return validator


def _validator_for(schema: dict[str, Any]) -> tuple[Validator, bool]:
    """The validator, and whether it is small enough to keep."""
    text = json.dumps(schema, sort_keys=True)
    key = hashlib.sha256(text.encode()).hexdigest()
    if (cached := _cache.get(key)) is not None:
        _cache.move_to_end(key)
        return cached, True
    base = jsonschema.validators.validator_for(schema, default=jsonschema.Draft202012Validator)
    try:
        base.check_schema(schema)
    except jsonschema.exceptions.SchemaError as exc:
        raise BrokenSchema(exc.message) from None
    safe = _SAFE_CLASSES.get(base) or _SAFE_CLASSES.setdefault(base, _safe(base))
    validator = safe(schema, registry=Registry())
    kept = len(text) <= CACHE_MAX_BYTES
    if kept:
        _cache[key] = validator
        if len(_cache) > CACHE_ENTRIES:
            _cache.popitem(last=False)
    return validator, kept


def output_validator(name: str, schema: dict[str, Any]) -> Validator:
    """For the SDK's check of a tool result's ``structuredContent`` (``sdk_internals``): its
    own contract, a ``RuntimeError`` for a broken schema."""
    try:
        return validator_for(schema)
    except BrokenSchema as exc:
        raise RuntimeError(f"Invalid schema for tool {name}: {exc}") from None
