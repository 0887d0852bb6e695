"""Prometheus metrics: every one defined here, so their names and meanings live in one place.

Served at ``GET /metrics``. With several uvicorn workers each process has its own registry;
run one worker per pod (scale with replicas) for exact figures.
"""

from __future__ import annotations

from functools import cache
from typing import Any

from prometheus_client import Counter, Gauge, Histogram

CALLER_SERVER = "caller"
"""The ``server`` label of every server a caller named by URL: its ``server_label`` is the
caller's free text, and one series per value would let any caller grow the registry."""


@cache
def series(metric: Any, *values: str) -> Any:
    """``metric.labels(*values)``, looked up once: ``labels`` checks its arguments and takes a
    lock on every call (a few µs, several times a run). The registry keeps every series it
    made anyway, so this holds no more than it does (and no series here is ever removed)."""
    return metric.labels(*values)


def server_label(label: str | None, *, registered: bool) -> str:
    """The ``server`` label value: a registered server's label, else ``caller``."""
    return (label or "(none)") if registered else CALLER_SERVER


REQUESTS = Counter(
    "toolbridge_http_requests", "HTTP requests by route and status", ["route", "status"]
)
API_IN_FLIGHT = Gauge(
    "toolbridge_api_requests_in_flight", "Requests under /v1/ being served now (runs included)"
)
RUN_SECONDS = Histogram(
    "toolbridge_run_duration_seconds",
    "One run, first event to last",
    buckets=(0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300),
)
RUN_TURNS = Histogram(
    "toolbridge_run_model_turns", "Model turns per run", buckets=(1, 2, 3, 4, 5, 7, 10, 15, 20)
)
RUNS = Counter("toolbridge_runs", "Finished runs by reason", ["reason"])
TOOL_CALLS = Counter(
    "toolbridge_mcp_tool_calls", "MCP tool calls by server and outcome", ["server", "outcome"]
)
TOOL_SECONDS = Histogram(
    "toolbridge_mcp_tool_call_seconds",
    "MCP tool call latency",
    ["server"],
    buckets=(0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
)
POOLED_SESSIONS = Gauge(
    "toolbridge_mcp_pooled_sessions", "Warm MCP sessions (app/mcp/sessions/pool.py)", ["state"]
)
MCP_AUTH_FAILURES = Counter(
    "toolbridge_mcp_auth_failures", "OAuth flows with a registered server that failed", ["server"]
)
MCP_AUTH_TOKENS = Counter(
    "toolbridge_mcp_auth_token_requests",
    "Tokens fetched for registered servers (client credentials), per replica",
    ["server"],
)
TOOL_LISTS = Counter("toolbridge_mcp_tool_list_cache", "Tool-list cache look-ups", ["result"])
SAMPLING = Counter(
    "toolbridge_sampling_requests",
    "Sampling requests by server, model, outcome",
    ["server", "model", "outcome"],
)
SPEND = Counter("toolbridge_budget_spend_usd", "Settled spend in USD by API key id", ["key"])
HOLDS = Counter("toolbridge_budget_holds", "Budget holds by outcome", ["outcome"])
HOLDS_IN_FLIGHT = Gauge(
    "toolbridge_budget_holds_in_flight", "Budget holds reserved and not yet settled or released"
)
REFUSALS = Counter(
    "toolbridge_budget_refusals",
    "Model calls (and runs) refused because a budget could not pay, by API key id",
    ["key"],
)
BUDGET_USED = Gauge(
    "toolbridge_budget_used_ratio",
    "Spent plus held over the limit, per API key id and period (total, day, month), for keys "
    "with that limit; read from Redis every 30 s (every replica reports the same value)",
    ["key", "period"],
)
REDIS_ERRORS = Counter(
    "toolbridge_redis_errors",
    "Redis operations that failed, by the state they were for (answered 503 or degraded)",
    ["store"],
)
OVERRUNS = Counter(
    "toolbridge_budget_output_overruns",
    "Model calls that produced more output tokens than their max_tokens (charged in full)",
    ["model"],
)
