"""Input tokens of a model call, counted close to what the provider will bill, for its hold.

A hold must cover the bill (so spend never passes a limit), but a hold far above it leaves
the key's other calls less than the budget really has. So the input is counted with the
model's tokenizer: tiktoken's encoding for the OpenAI models it knows, and otherwise
``cl100k_base``, as litellm's ``token_counter`` does for models it has no tokenizer for.
The text counted is the call's JSON (messages and tool schemas, keys and quotes included),
which is more than providers bill for the same content; a margin on top covers what is left
(other models' tokenizers, per-message framing). docs: docs/budgets.md.

The encodings are the files litellm ships (read as data, litellm is not imported: seconds and
~100 MB), so nothing is downloaded.
"""

from __future__ import annotations

import importlib.util
import math
import os
from pathlib import Path
from typing import Any

import anyio
import orjson
import tiktoken

FALLBACK_ENCODING = "cl100k_base"
KNOWN_MARGIN = 1.1
"""On the count of a model tiktoken knows."""
FALLBACK_MARGIN = 1.3
"""On the count of any other model: its own tokenizer may make more tokens of the text."""
PER_MESSAGE = 4
"""Framing a provider adds to each message (OpenAI: 3, plus 3 for the reply's priming)."""

_loaded: dict[str, tiktoken.Encoding] = {}


def _bundled_encodings() -> str | None:
    spec = importlib.util.find_spec("litellm")
    if spec is None or not spec.submodule_search_locations:
        return None
    folder = Path(spec.submodule_search_locations[0]) / "litellm_core_utils" / "tokenizers"
    return str(folder) if folder.is_dir() else None


def encoding_name(model: str) -> tuple[str, float]:
    """The encoding for ``model`` (a provider prefix is ignored), and the margin it needs."""
    try:
        return tiktoken.encoding_name_for_model(model.rsplit("/", 1)[-1]), KNOWN_MARGIN
    except KeyError:
        return FALLBACK_ENCODING, FALLBACK_MARGIN


def _load(name: str) -> tiktoken.Encoding:
    if (folder := _bundled_encodings()) is not None:
        os.environ.setdefault("TIKTOKEN_CACHE_DIR", folder)  # tiktoken reads it at each load
    encoding = _loaded[name] = tiktoken.get_encoding(name)
    return encoding


async def _encoding(model: str) -> tuple[tiktoken.Encoding, float]:
    name, margin = encoding_name(model)
    encoding = _loaded.get(name)
    if encoding is None:  # the first load reads a file of megabytes: off the event loop
        encoding = await anyio.to_thread.run_sync(_load, name)
    return encoding, margin


async def input_tokens(model: str, messages: list[Any], tools: list[Any]) -> int:
    """An upper estimate of the input tokens a provider bills for this call."""
    encoding, margin = await _encoding(model)
    text = orjson.dumps([messages, tools], default=str).decode()
    counted = len(encoding.encode_ordinary(text))
    return math.ceil(counted * margin) + PER_MESSAGE * (len(messages) + 1)


def _message_text(message: Any) -> str:
    """What of a message the model reads: its text, and its tool calls as JSON."""
    if not isinstance(message, dict):
        return str(message)
    content = message.get("content")
    if isinstance(content, list):
        content = " ".join(str(p.get("text", "")) for p in content if isinstance(p, dict))
    parts = [str(message.get("role", "")), str(content or "")]
    if message.get("tool_calls"):
        parts.append(orjson.dumps(message["tool_calls"], default=str).decode())
    return "\n".join(parts)


async def counted_tokens(model: str, messages: list[Any], tools: list[Any]) -> int:
    """The input tokens of this call as OpenAI counts a chat prompt (each message's text and
    framing, the tool definitions as JSON), with the model's tokenizer and no margin: what
    ``/v1/responses/input_tokens`` answers."""
    encoding, _ = await _encoding(model)
    counted = sum(len(encoding.encode_ordinary(_message_text(m))) for m in messages)
    if tools:
        counted += len(encoding.encode_ordinary(orjson.dumps(tools, default=str).decode()))
    return counted + PER_MESSAGE * len(messages) + 3
