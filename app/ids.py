"""Ids that name things for a while and are never looked up without their owner's key: budget
holds, runs, requests, chat completions. 128 random bits from a generator of our own, seeded by
the OS (and again in a forked child), without a system call each: ``os.urandom`` cost about
6 µs a call under load here (profiled), several times a run. Not the ``random`` module's shared
generator: code beside us (a test's property-based generator, for one) may rely on its state.
Ids of stored objects (responses, conversations, their items) and lock tokens come from
``secrets`` instead."""

from __future__ import annotations

import os
import random
import secrets

_generator = random.Random()
os.register_at_fork(after_in_child=_generator.seed)


def run_scoped_id() -> str:
    """32 hex digits, unique in practice; not a secret."""
    return f"{_generator.getrandbits(128):032x}"


def stored_id() -> str:
    """32 hex digits from ``secrets``: a stored object's id or a lock token, not guessable."""
    return secrets.token_hex(16)
