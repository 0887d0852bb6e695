"""The FastAPI application: services built once in the lifespan, closed in reverse."""

from __future__ import annotations

import gc
import logging
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager

import anyio
import httpx2
import sniffio
from fastapi import FastAPI
from fastapi.telemetry import TelemetryConfig
from starlette.applications import Starlette

from app.api import budget, conversations, system
from app.api.auth import KeyRing
from app.api.chat import routes as chat
from app.api.deps import Services
from app.api.errors import install_error_handlers
from app.api.json_route import HotRoutes
from app.api.middleware import INTERNAL_PREFIX, BodyLimitMiddleware, RequestIdMiddleware
from app.api.responses import routes as responses
from app.api.responses.background import BackgroundRuns
from app.budget.exporter import export_budget_use
from app.budget.ledger import Ledger
from app.check import check
from app.config import Settings
from app.demo.mcp_server import build_demo_server
from app.demo.scripted_model import create_scripted_model_app
from app.engine.deps import EngineDeps
from app.errors import StoreUnavailable
from app.limits import KeyLimits
from app.llm.client import ModelClient
from app.logs import configure_logging
from app.mcp.sessions import sdk_internals
from app.mcp.sessions.pool import SessionPool
from app.mcp.transport.clients import ListingBounds, McpClients, tls_context
from app.mcp.transport.http import AiohttpTransport, Wire
from app.mcp.transport.oauth import ServerAuth
from app.mcp.transport.ssrf import AddressPolicy, caller_pool
from app.store.background import BackgroundStore
from app.store.connect import RedisClient, connect, warm_up
from app.store.conversations import ConversationStore
from app.store.hidden_turns import HiddenTurns
from app.store.mcp_cache import EraStore, RedisResponseCacheStore
from app.store.rate import RateLimiter
from app.store.responses import Quotas, ResponseStore
from app.tracing import configure_tracing

logger = logging.getLogger("toolbridge")

GC_THRESHOLDS = (10_000, 20, 10)
"""The collector's thresholds while serving (Python's: 700, 10, 10). A run's objects live as
long as the run (seconds, with a slow tool): collected every 700 allocations, they were
promoted to the oldest generation before they died, whose full collections then scanned every
run in flight (0.45 s each, 14 s of CPU over 4,096 runs at 1,024 in flight, the event loop
stalled meanwhile). A young generation 14 times as large lets them die young."""

MCP_POOL_LIMITS = httpx2.Limits(
    max_connections=512, max_keepalive_connections=128, keepalive_expiry=4.0
)
"""Per pool: one for registered MCP servers, one for the servers callers name by URL. An idle
connection is closed after 4 s, before the 5 s after which common servers (uvicorn, Node's
http) close it: one reused just as the server closes it fails the request sent on it (seen as
"could not connect (ReadError)" with 1,024 runs in flight)."""


def _build_services(
    settings: Settings,
    redis: RedisClient,
    pool: Wire,
    caller_pool: Wire,
    sessions: SessionPool,
) -> Services:
    prefix = settings.redis_prefix
    key_limits = KeyLimits(
        max_runs=settings.request_limits.max_runs_per_key,
        max_connections=settings.request_limits.max_connections_per_key,
    )
    clients = McpClients(
        pool=pool,
        caller_pool=caller_pool,
        cache_store=RedisResponseCacheStore(redis, prefix),
        eras=EraStore(redis, prefix, settings.server_era_ttl_s),
        default_ttl_s=settings.tool_list_ttl_s,
        share_public=settings.share_public_tool_lists,
        stderr_level=logging.getLevelName(settings.stdio_stderr_level),
        key_limits=key_limits,
        auths={
            server.label: ServerAuth(server)
            for server in settings.effective_servers()
            if server.auth_type == "oauth2"
        },
        listing_bounds=ListingBounds(
            max_tools=settings.mcp_max_listed_tools, max_bytes=settings.mcp_max_listing_bytes
        ),
        direct_calls=settings.mcp_direct_calls,
    )
    models = ModelClient(
        settings.effective_models(),
        num_retries=settings.model_num_retries,
        timeout_s=settings.model_timeout_s,
        direct=settings.model_direct,
    )
    engine = EngineDeps(
        models=models,
        mcp=clients,
        sessions=sessions,
        hidden=HiddenTurns(redis, prefix, settings.hidden_turns_ttl_s),
        rates=RateLimiter(redis, prefix),
        sampling=settings.sampling,
        ledger=Ledger(
            redis,
            prefix,
            hold_ttl_s=settings.budget.hold_ttl_s,
            fail_open=settings.budget.fail_open,
        ),
        budget=settings.budget,
        key_limits=key_limits,
    )
    keys = KeyRing(settings.api_keys, allow_anonymous=settings.allow_anonymous)
    return Services(
        settings=settings,
        redis=redis,
        engine=engine,
        keys=keys,
        registered_servers=settings.effective_servers(),
        background=BackgroundRuns(
            BackgroundStore(
                redis,
                prefix,
                ttl_s=settings.responses_ttl_s,
                lease_s=settings.background.lease_s,
                max_per_key=settings.background.max_per_key,
            ),
            max_running=settings.background.max_running_per_replica,
        ),
        conversations=ConversationStore(
            redis, prefix, settings.responses_ttl_s, settings.conversation_max_items
        ),
        responses=ResponseStore(
            redis,
            prefix,
            settings.responses_ttl_s,
            Quotas(
                max_count=settings.stored_responses_max_per_key,
                max_bytes=settings.stored_responses_max_bytes_per_key,
            ),
        ),
        address_policy=AddressPolicy.from_entries(settings.ssrf_allowlist),
    )


async def _adopt_legacy_budget_keys(services: Services) -> None:
    """Keep spend recorded before budget keys had a hash tag (Redis may be down: later)."""
    try:
        moved = await services.engine.ledger.adopt_legacy_keys()
    except StoreUnavailable:
        return
    if moved:
        logger.warning("moved %d budget records to the hash-tagged key layout", moved)


def _announce(settings: Settings, services: Services) -> None:
    if settings.allow_anonymous:
        logger.warning(
            "OPEN MODE: TOOLBRIDGE_ALLOW_ANONYMOUS is set, so any caller is served "
            "without an API key. Never expose this process to a network."
        )
    for problem in check(settings).problems:  # what ``python -m app --check`` says, logged
        logger.warning("configuration problem: %s", problem)
    if settings.demo_enabled:
        logger.warning(
            "DEMO: no models configured; serving %s and the demo MCP server (label 'demo').",
            ", ".join(services.engine.models.names()),
        )


def create_app(settings: Settings | None = None) -> FastAPI:
    """The toolbridge app; ``settings`` default to the environment and config file."""
    settings = settings or Settings()
    sdk_internals.check()  # an SDK that changed under us stops start-up, clearly
    if not logging.getLogger().handlers:  # a uvicorn worker process: configure it too
        configure_logging(settings.log_level)
    configure_tracing(settings.otlp_endpoint)
    demo_mcp: Starlette | None = None

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        if not settings.redis_url:
            raise RuntimeError(
                "TOOLBRIDGE_REDIS_URL is not set: start with 'make run' "
                "(python -m app), which starts an embedded Redis."
            )
        # The event loop's thread is asyncio's for good: sniffio (which anyio asks on almost
        # every call) answers from this instead of looking for the current task each time.
        sniffio.thread_local.name = "asyncio"
        async with AsyncExitStack() as stack:
            redis = connect(
                settings.redis_url,
                cluster=settings.redis_cluster,
                ca_file=settings.redis_ca_file,
                max_connections=settings.redis_max_connections,
            )
            stack.push_async_callback(redis.aclose)
            tls = tls_context(settings.mcp_ca_file)
            bound = settings.mcp_max_response_bytes
            pool = AiohttpTransport(verify=tls, limits=MCP_POOL_LIMITS, max_body_bytes=bound)
            stack.push_async_callback(pool.aclose)
            caller = caller_pool(verify=tls, limits=MCP_POOL_LIMITS, max_body_bytes=bound)
            stack.push_async_callback(caller.aclose)
            if demo_mcp is not None:
                await stack.enter_async_context(demo_mcp.router.lifespan_context(demo_mcp))
            await warm_up(redis)
            sessions = await stack.enter_async_context(
                SessionPool(
                    idle_s=settings.mcp_pool.idle_s,
                    max_idle=settings.mcp_pool.max_idle,
                    max_idle_per_server=settings.mcp_pool.max_idle_per_server,
                )
            )
            services = _build_services(settings, redis, pool, caller, sessions)
            stack.push_async_callback(services.engine.models.aclose)
            # Background responses run here; at shutdown they are cancelled (their lease
            # lapses, and they read failed), before the pools they use close.
            background = await stack.enter_async_context(anyio.create_task_group())
            stack.callback(background.cancel_scope.cancel)
            services.background.tasks = background
            background.start_soon(export_budget_use, services.engine.ledger, settings.api_keys)
            if not settings.redis_cluster:
                await _adopt_legacy_budget_keys(services)
            app.state.services = services
            _announce(settings, services)
            # What start-up made (imports, litellm's tables when a model needs them) lives as
            # long as the app: frozen, no collection scans it again. Unfrozen, a full
            # collection took 100 ms with litellm loaded, and ran every few hundred requests.
            gc.freeze()
            stack.callback(gc.unfreeze)
            thresholds = gc.get_threshold()
            gc.set_threshold(*GC_THRESHOLDS)
            stack.callback(gc.set_threshold, *thresholds)
            yield

    # FastAPI's own OpenTelemetry: HTTP spans when tracing is configured; no metrics or logs
    # (Prometheus has ours), so it does not ask the providers on every request.
    telemetry: TelemetryConfig = {
        "tracing": settings.otlp_endpoint is not None,
        "metrics": False,
        "logs": False,
    }
    app = FastAPI(title="toolbridge", version="0.1.0", lifespan=lifespan, telemetry=telemetry)
    if not telemetry["tracing"]:  # with tracing, FastAPI's router names each request's span
        routes = [*chat.router.routes, *responses.router.routes, *conversations.router.routes]
        app.add_middleware(HotRoutes, routes=routes)  # innermost: added first
    app.add_middleware(BodyLimitMiddleware, max_bytes=settings.request_limits.max_body_bytes)
    app.add_middleware(RequestIdMiddleware)  # outermost: every line and answer gets an id
    install_error_handlers(app)
    app.include_router(chat.router)
    app.include_router(responses.router)
    app.include_router(conversations.router)
    app.include_router(budget.router)
    app.include_router(system.router)
    if settings.demo_enabled:
        demo_mcp = build_demo_server().streamable_http_app(host=settings.host)
        app.mount(f"{INTERNAL_PREFIX}model", create_scripted_model_app())
        app.mount(INTERNAL_PREFIX.rstrip("/"), demo_mcp)
    return app
