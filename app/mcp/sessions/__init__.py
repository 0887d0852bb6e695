"""Sessions: one session's calls (``session``, sent directly on 2026-07-28 servers by
``direct_calls``), the era policy (``eras``), warm sessions between runs (``pool``), one run's
set of sessions (``run_sessions``) and the ``mcp`` SDK's private parts we rely on
(``sdk_internals``, checked at start-up)."""
