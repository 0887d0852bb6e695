"""The process's limit on open files, raised to what the system allows.

Every run in flight holds a few descriptors (the caller's connection, its MCP and model
connections), and Linux starts a process with a soft limit of 1,024 (macOS: 256) under a hard
limit that is usually far higher. A thousand streams would otherwise fail with "Too many open
files" while the system would have allowed them; Go's runtime raises the limit the same way.
"""

from __future__ import annotations

import logging

try:
    import resource
except ImportError:  # not on Windows
    resource = None  # type: ignore[assignment]

logger = logging.getLogger(__name__)

FEW_OPEN_FILES = 4096
"""Below this, a few hundred runs in flight can exhaust the limit: a warning says so."""
MACOS_OPEN_MAX = 10_240
"""What macOS grants when the hard limit is unlimited, which it refuses as a soft limit."""


def raise_open_files_limit() -> int | None:
    """Raise the soft limit on open files to the hard one; the limit now (None: unknown)."""
    if resource is None:
        return None
    unlimited = resource.RLIM_INFINITY
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    wanted = [hard] if hard != unlimited else [hard, MACOS_OPEN_MAX]
    for limit in wanted:
        if soft == unlimited or (limit != unlimited and limit <= soft):
            break
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (limit, hard))
        except (ValueError, OSError) as exc:
            logger.debug("open files limit not raised to %d: %s", limit, exc)
            continue
        soft = limit
        break
    if soft != unlimited and soft < FEW_OPEN_FILES:
        logger.warning(
            "open files limit is %d: each run in flight holds a few, so a few hundred at once "
            "can fail with 'Too many open files' (raise the hard limit: ulimit -Hn, or the "
            "container runtime's nofile)",
            soft,
        )
    return soft
