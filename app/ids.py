"""Ids that name things for a while and are never looked up without their owner's key: budget
holds, runs, requests, chat completions. 128 random bits from the process's generator (seeded
by the OS, and again in every forked child), without a system call each: ``os.urandom`` cost
about 6 µs a call under load here (profiled), several times a run. Ids of stored objects
(responses, conversations, their items) and lock tokens come from ``secrets`` instead."""

from __future__ import annotations

import random


def run_scoped_id() -> str:
    """32 hex digits, unique in practice; not a secret."""
    return f"{random.getrandbits(128):032x}"
