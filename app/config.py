"""Configuration: ``TOOLBRIDGE_*`` environment variables (and ``.env``) plus one YAML file.

The YAML file (``TOOLBRIDGE_CONFIG_FILE``) holds what is structured: models in LiteLLM's
``model_list`` shape so LiteLLM users' configs carry over, the MCP servers an operator
registers, API keys with their policies, and limits. Environment variables override the file,
so a Kubernetes Secret can supply ``TOOLBRIDGE_API_KEYS`` as JSON without touching the ConfigMap.

With no models configured, toolbridge runs its demo: the scripted model and a demo MCP server,
both served by the same process (see ``app/demo``), or real OpenAI models when
``OPENAI_API_KEY`` is set.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Literal

import yaml
from dotenv import dotenv_values
from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator, model_validator
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    YamlConfigSettingsSource,
)

from app.url_patterns import UrlPattern

DEMO_MODEL = "toolbridge-demo"
"""Name of the scripted demo model; clearly not a real model."""

OPENAI_DEFAULT_MODELS = ("gpt-4o-mini", "gpt-4o", "gpt-4.1-mini")
"""Served when no model_list is configured but ``OPENAI_API_KEY`` is set."""


class _Documented(BaseModel):
    """Fields' docstrings are their descriptions: the configuration reference is generated
    from them (``app/config_reference.py``)."""

    model_config = ConfigDict(use_attribute_docstrings=True)


class ModelEntry(_Documented):
    """One deployment, in LiteLLM's ``model_list`` shape."""

    model_name: str
    """The name callers use."""
    litellm_params: dict[str, Any]
    """Passed to ``litellm.Router`` as is (``model``, ``api_base``, ``api_key``, ...)."""
    model_info: dict[str, Any] = Field(default_factory=dict)
    """Prices and our sampling metadata."""


class RegisteredServer(_Documented):
    """An MCP server the operator registers; requests may name it by ``server_label`` alone."""

    label: str = Field(pattern=r"^[a-zA-Z0-9_-]{1,64}$")
    """The name requests use (``server_label``); prefixes its tools for the model."""
    url: str | None = None
    """The server's endpoint (Streamable HTTP or SSE)."""
    transport: Literal["streamable_http", "sse", "stdio"] = "streamable_http"
    """How toolbridge talks to it (``url`` for the HTTP ones, ``command`` for stdio)."""
    command: list[str] | None = None
    """stdio only: the command line that starts the server."""
    env: dict[str, str] = Field(default_factory=dict)
    """stdio only: environment variables for the server (literal values; not for secrets)."""
    env_from_env: dict[str, str] = Field(default_factory=dict)
    """stdio only: server variable -> toolbridge's variable holding its value (for secrets)."""
    headers_from_env: dict[str, str] = Field(default_factory=dict)
    """Header name -> environment variable holding its value (secrets never sit in the file)."""
    description: str | None = None
    """What the server is for: tool search's description of a deferred server."""
    elicitation: bool = True
    """Declare elicitation to this server (every request is declined, visibly)."""
    sampling: bool = False
    """Opt in: answer this server's sampling requests with our models."""
    sampling_rate_per_minute: int | None = Field(default=None, ge=1)
    """This server's sampling requests per minute, across replicas (default: sampling's)."""
    sampling_budget_usd: float | None = Field(default=None, ge=0)
    """Total sampling spend this server may cause (a budget scope of its own)."""
    prefer_structured_content: bool = False
    """Give the model a result's ``structuredContent`` (as JSON) instead of its text."""

    # OAuth for the server, with LiteLLM's keys (``app/mcp/transport/oauth.py``,
    # docs/mcp-servers.md).
    auth_type: Literal["none", "oauth2"] = "none"
    """``oauth2``: toolbridge authenticates with the team's identity provider (below)."""
    oauth2_flow: Literal["client_credentials"] = "client_credentials"
    """How toolbridge gets its tokens; further flows (token exchange...) would go here."""
    client_id: str | None = None
    """toolbridge's client id at the identity provider."""
    client_secret: SecretStr | None = None
    """``os.environ/NAME``: read from the environment at start-up (a missing one stops it)."""
    token_endpoint_auth_method: Literal[
        "client_secret_basic", "client_secret_post", "private_key_jwt"
    ] = "client_secret_basic"
    """How the client authenticates at the token endpoint."""
    private_key: SecretStr | None = None
    """``os.environ/NAME`` holding a PEM key, for ``private_key_jwt``."""
    signing_algorithm: str = "RS256"
    """For ``private_key_jwt``: RS256, ES256, ..."""
    token_url: str | None = None
    """The token endpoint; discovered from the server's metadata when not given."""
    issuer: str | None = None
    """The authorization server's issuer: credentials go only to its discovered endpoints."""
    scopes: list[str] | None = None
    """Scopes to ask for; from the server's metadata (``scopes_supported``) when not given."""

    @field_validator("client_secret", "private_key", mode="before")
    @classmethod
    def _from_environment(cls, value: Any, info: Any) -> Any:
        if value is None:
            return None
        text = value.get_secret_value() if isinstance(value, SecretStr) else str(value)
        if not text.startswith("os.environ/"):
            raise ValueError(
                f"{info.field_name} must be os.environ/NAME (secrets never sit in the file)"
            )
        name = text.removeprefix("os.environ/")
        if name not in os.environ:
            raise ValueError(f"{info.field_name}: the environment variable {name} is not set")
        return SecretStr(os.environ[name])

    @model_validator(mode="after")
    def _check_transport(self) -> RegisteredServer:
        if self.transport == "stdio" and not self.command:
            raise ValueError(f"MCP server {self.label!r}: stdio transport needs 'command'")
        if self.transport != "stdio" and not self.url:
            raise ValueError(f"MCP server {self.label!r}: {self.transport} transport needs 'url'")
        if self.auth_type == "oauth2":
            self._check_oauth()
        return self

    def _check_oauth(self) -> None:
        where = f"MCP server {self.label!r}"
        if self.transport == "stdio":
            raise ValueError(f"{where}: oauth2 is for servers over HTTP")
        if not self.client_id:
            raise ValueError(f"{where}: oauth2 needs client_id")
        if self.token_endpoint_auth_method == "private_key_jwt":
            if self.private_key is None:
                raise ValueError(f"{where}: private_key_jwt needs private_key")
        elif self.client_secret is None:
            raise ValueError(f"{where}: {self.token_endpoint_auth_method} needs client_secret")
        if not (self.issuer or self.token_url):
            raise ValueError(
                f"{where}: oauth2 needs issuer or token_url, so the credentials go only to "
                "the authorization server named here, not to one the MCP server points at"
            )

    def environment(self) -> dict[str, str]:
        """A stdio server's own variables, resolved now (a missing variable is skipped). The
        server also gets the few the SDK passes (HOME, PATH, SHELL, TERM, ...), nothing else."""
        resolved = {
            name: os.environ[var] for name, var in self.env_from_env.items() if var in os.environ
        }
        return {**self.env, **resolved}

    def headers(self) -> dict[str, str]:
        """Static headers resolved from the environment now (a missing variable is skipped)."""
        return {
            name: os.environ[var]
            for name, var in self.headers_from_env.items()
            if var in os.environ
        }


class KeyBudget(_Documented):
    """A key's spend limits in USD; every model call of its runs counts, sampling included."""

    model_config = ConfigDict(extra="forbid")
    total_usd: float | None = Field(default=None, ge=0)
    """For the key's whole life."""
    daily_usd: float | None = Field(default=None, ge=0)
    """Per UTC day."""
    monthly_usd: float | None = Field(default=None, ge=0)
    """Per UTC calendar month."""
    per_run_usd: float | None = Field(default=None, ge=0)
    """One request's spend: its model turns and its servers' sampling together."""


class BudgetSettings(_Documented):
    """How budgets hold, cap output, and behave without Redis."""

    hold_ttl_s: float = Field(default=900.0, gt=0)
    """A hold left by a replica that died lapses after this long."""
    default_max_tokens: int = Field(default=4096, ge=1)
    """Output a call may produce when it states no limit and a budget applies (it is sent as the
    call's ``max_tokens``), and the worst case held for it, while the budget is plentiful."""
    plentiful_calls: int = Field(default=8, ge=0)
    """A budget is plentiful while what is left pays for this many calls of their full output
    limit (the caller's ``max_tokens``, else ``default_max_tokens``); 0: always."""
    typical_output_tokens: int = Field(default=256, ge=1)
    """Output granted to a call that states no limit once the budget is not plentiful: what a
    call is likely to need, so a burst of calls shares what is left instead of the first few
    holding it all. An answer longer than this is cut short (``budget_exceeded``)."""
    min_output_tokens: int = Field(default=64, ge=1)
    """When the budget left cannot pay for what a call is granted, it still gets what remains,
    down to this many tokens (room for a short tool call); below that (or short of its input)
    it is refused."""
    fail_open: bool = False
    """Without Redis: refuse budgeted work with 503 (default), or run it uncounted."""


class BackgroundSettings(_Documented):
    """Background responses (``background: true``): how many, and how a lost run is noticed."""

    max_per_key: int = Field(default=16, ge=1)
    """Background responses one key may have queued or running, across every replica; more
    are refused with 429 at create."""
    max_running_per_replica: int = Field(default=32, ge=1)
    """Background runs one replica works on at once; the rest wait ``queued`` for a slot."""
    lease_s: float = Field(default=15.0, ge=1)
    """A replica renews its lease on each background response it holds every third of this;
    when a replica dies, its responses read ``failed`` (``server_error``) once it lapses."""


class ApiKeyConfig(_Documented):
    """A caller's key and what it may use."""

    id: str
    """Stable identifier used in logs, budgets and stored data (never the key itself)."""
    key: SecretStr | None = None
    """The key callers send as ``Authorization: Bearer <key>`` (or ``key_env``)."""
    key_env: str | None = None
    """Environment variable holding the key, instead of ``key``."""
    models: list[str] = Field(default_factory=lambda: ["*"])
    """Models this key may use (glob patterns)."""
    mcp_servers: list[str] = Field(default_factory=lambda: ["*"])
    """Labels of registered servers this key may use ("*" = all)."""
    allow_server_urls: bool = True
    """Whether this key may name MCP servers by ``server_url`` in a request."""
    server_urls: list[str] = Field(default_factory=lambda: ["*"])
    """Patterns the ``server_url``s this key names must match: ``*``, or
    ``scheme://host[:port][/path]`` matched part by part (``app/url_patterns.py``)."""

    @field_validator("server_urls")
    @classmethod
    def _check_patterns(cls, patterns: list[str]) -> list[str]:
        for pattern in patterns:
            UrlPattern.parse(pattern)  # BadPattern (a ValueError) names the entry
        return patterns

    allow_sampling: bool = False
    """Whether servers named by URL may sample our models, charged to this key."""
    budget: KeyBudget = Field(default_factory=lambda: KeyBudget())
    """Spend limits in USD (none: unlimited, still counted)."""

    def secret(self) -> str | None:
        if self.key is not None:
            return self.key.get_secret_value()
        if self.key_env:
            return os.environ.get(self.key_env)
        return None


class Limits(_Documented):
    """Per-run limits; a request may lower (never raise) the ones marked overridable."""

    max_turns: int = Field(default=10, ge=1)
    """Model calls in one run."""
    max_tool_calls: int = Field(default=32, ge=0)
    """MCP tool calls in one run."""
    tool_timeout_s: float = Field(default=60.0, gt=0)
    """One MCP tool call, start to result."""
    max_tool_output_chars: int = Field(default=20_000, ge=256)
    """Tool output fed to the model; longer output is truncated with a marker."""
    list_timeout_s: float = Field(default=15.0, gt=0)
    """Connecting to one MCP server and listing its tools."""
    max_tool_argument_bytes: int = Field(default=65_536, ge=256)
    """Arguments the model writes for one call; larger ones go back to it as an error."""


class SessionPoolSettings(_Documented):
    """Warm MCP sessions kept between one caller's runs (``app/mcp/sessions/pool.py``)."""

    idle_s: float = Field(default=60.0, gt=0)
    """A session unused for this long is closed (for stdio servers: the process stops)."""
    max_idle: int = Field(default=64, ge=0)
    """Idle sessions kept in all; 0 turns pooling off (every run opens and closes its own)."""
    max_idle_per_server: int = Field(default=16, ge=1)
    """Idle sessions kept per caller key, server and credentials."""


class SamplingSettings(_Documented):
    """How toolbridge answers MCP servers' sampling requests."""

    default_model: str | None = None
    """Used when a request states no preferences (default: the first sampling model)."""
    cross_family: dict[str, str] = Field(default_factory=dict)
    """Hint family -> one of our models, e.g. ``{"claude": "gpt-4o"}``."""
    max_tokens_cap: int = Field(default=4096, ge=1)
    """``maxTokens`` is always respected, and never above this."""
    timeout_s: float = Field(default=60.0, gt=0)
    """One sampling request's model call."""
    max_per_tool_call: int = Field(default=5, ge=0)
    """Sampling requests one tool call may make (more are refused; the run goes on)."""
    max_per_run: int = Field(default=20, ge=0)
    """Sampling requests one run may make."""
    rate_per_minute: int = Field(default=60, ge=1)
    """Per server, across every replica (Redis)."""


class RequestLimits(_Documented):
    """What one request may carry; more is refused with 400 (or 413 for the body)."""

    max_body_bytes: int = Field(default=4 * 1024 * 1024, ge=1024)
    """A request's body (413 beyond it)."""
    max_messages: int = Field(default=2048, ge=1)
    """Messages (Chat Completions) or input items (Responses), earlier turns included."""
    max_tools: int = Field(default=256, ge=1)
    """Tools in one request, MCP and function tools together."""
    max_mcp_servers: int = Field(default=16, ge=0)
    """MCP servers in one request."""
    max_runs_per_key: int = Field(default=64, ge=1)
    """Runs one key may have in progress on one replica; more are refused with 429."""
    max_connections_per_key: int = Field(default=64, ge=1)
    """Requests one key may have open at once, on one replica, to the MCP servers it names by
    URL (more wait their turn), so one tenant's slow servers cannot take the shared pool."""


class ConfigError(ValueError):
    """The configuration cannot be used; start-up stops with this message."""


def _config_file() -> str | None:
    """The YAML path, from the environment or ``.env`` (read before the settings exist)."""
    return os.environ.get("TOOLBRIDGE_CONFIG_FILE") or dotenv_values(".env").get(
        "TOOLBRIDGE_CONFIG_FILE"
    )


def _yaml_source(settings_cls: type[BaseSettings], path: str) -> PydanticBaseSettingsSource:
    """The config file's settings; a file that is missing or is not a YAML mapping is an error,
    never an empty configuration (that would silently start the demo with no keys)."""
    if not Path(path).is_file():
        raise ConfigError(f"TOOLBRIDGE_CONFIG_FILE={path}: no such file")
    try:
        source = YamlConfigSettingsSource(settings_cls, yaml_file=path)
    except (yaml.YAMLError, ValueError) as exc:
        raise ConfigError(f"TOOLBRIDGE_CONFIG_FILE={path} does not parse: {exc}") from None
    return source


class Settings(BaseSettings):
    """Everything toolbridge reads at start-up."""

    model_config = SettingsConfigDict(
        env_prefix="TOOLBRIDGE_",
        env_file=".env",
        extra="ignore",
        env_nested_delimiter="__",
        use_attribute_docstrings=True,
    )

    config_file: str | None = None
    """The YAML file with the structured settings (``model_list``, ``mcp_servers``,
    ``api_keys``...); unset: none."""
    host: str = "127.0.0.1"
    """The address to listen on (``0.0.0.0`` in a container)."""
    port: int = 8000
    """The port to listen on."""
    workers: int = Field(default=1, ge=1)
    """uvicorn worker processes (``python -m app``); metrics are then per worker."""
    http_keepalive_s: int = Field(default=75, ge=1)
    """How long an idle client connection is kept open. Longer than clients keep theirs (the
    OpenAI SDK: 5 s) and than a load balancer's idle timeout in front (AWS ALB: 60 s), so a
    connection is never closed here just as a client sends a request on it."""
    public_base_url: str | None = None
    """How this process reaches itself (the demo model and MCP server live on it)."""
    log_level: str = "INFO"
    """DEBUG, INFO, WARNING or ERROR (JSON lines on stderr)."""
    stdio_stderr_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    """The level stdio servers' stderr lines are logged at (logger ``toolbridge.mcp.stderr``)."""
    otlp_endpoint: str | None = None
    """OTLP/HTTP collector base URL (e.g. http://otel-collector:4318); unset: no tracing."""

    redis_url: str | None = None
    """Unset: an embedded redis-server is started with data under ``data_dir``."""
    redis_cluster: bool = False
    """``redis_url`` names any node of a Redis Cluster (keys are laid out for one)."""
    redis_ca_file: Path | None = None
    """A PEM CA bundle to verify a ``rediss://`` Redis with (a private CA)."""
    redis_max_connections: int = Field(default=512, ge=8)
    """Connections to each Redis node (on a cluster: commands in flight at once). A command
    past them waits up to 10 s for a free one, then fails with 503."""
    redis_prefix: str = "tb:"
    """Put before every Redis key: deployments sharing one Redis need different ones."""
    data_dir: Path = Path(".data")
    """The embedded Redis keeps its data under ``<data_dir>/redis``."""

    mcp_max_response_bytes: int = Field(default=16 * 1024 * 1024, ge=64 * 1024)
    """An MCP server's response, counted after decoding (gzip...) as it streams; on a server's
    GET stream, each event. Past it the call fails (``app/mcp/transport/http.py``), nothing is
    kept."""
    mcp_max_listed_tools: int = Field(default=50_000, ge=1)
    """Tools one MCP server may list (all ``tools/list`` pages, ``nextCursor`` followed):
    past it the server fails with 424 instead of being held in memory."""
    mcp_max_listing_bytes: int = Field(default=32 * 1024 * 1024, ge=64 * 1024)
    """Bytes of one MCP server's tool list (all pages' JSON): past it the server fails (424)."""
    mcp_ca_file: Path | None = None
    """A PEM bundle of extra CAs to trust for MCP servers over https (a private CA), on top of
    the public ones."""
    metrics_token: SecretStr | None = None
    """When set, ``GET /metrics`` needs ``Authorization: Bearer <token>``."""
    ssrf_allowlist: list[str] = Field(default_factory=list)
    """CIDRs and hostnames (``*.corp.example``) a caller's server_url may reach although they
    are internal. Registered servers need no entry."""
    allow_anonymous: bool = False
    """Open mode for local use: any or no bearer key is accepted (logged loudly)."""
    demo: Literal["auto", "on", "off"] = "auto"
    """auto: the demo model and MCP server are served when no model_list is configured."""

    tool_list_ttl_s: int = Field(default=300, ge=0)
    """Cache life of a tool list when the server gives no ``ttlMs`` (legacy servers)."""
    share_public_tool_lists: bool = True
    """Serve a tool list a 2026-07-28 server marked ``cacheScope: public`` across credentials."""
    server_era_ttl_s: int = Field(default=600, ge=0)
    """How long a server's protocol era (discover result) is remembered."""
    hidden_turns_ttl_s: int = Field(default=86_400, ge=60)
    """How long MCP turns hidden from a Chat Completions client are kept for its continuation."""
    responses_ttl_s: int = Field(default=30 * 86_400, ge=60)
    """How long stored responses (``store: true``) are kept (a conversation's earlier turns as
    long as its latest)."""
    conversation_max_items: int = Field(default=10_000, ge=1)
    """Items one conversation may hold (Conversations API); it lives ``responses_ttl_s`` after
    its last write."""
    stored_responses_max_per_key: int = Field(default=10_000, ge=1)
    """Stored responses one key may keep; at the quota, a request that would store is a 429."""
    stored_responses_max_bytes_per_key: int = Field(default=100 * 1024 * 1024, ge=1024)
    """Bytes of stored responses one key may keep (each record's JSON; Redis also holds the
    budgets, so no key may fill it)."""
    model_num_retries: int = Field(default=2, ge=0)
    """Retries of a model call that failed with 408/409/429/5xx or did not connect."""
    model_timeout_s: float = Field(default=600.0, gt=0)
    """Connecting to the model provider, and each read of its answer."""
    model_direct: bool = True
    """Call a model with one OpenAI-compatible deployment (``openai/...`` with an ``api_base``)
    directly instead of through litellm (``app/llm/direct.py``)."""
    mcp_direct_calls: bool = True
    """Send a tool call on a 2026-07-28 Streamable HTTP session as one POST read by toolbridge
    instead of through the ``mcp`` SDK's streams (``app/mcp/sessions/direct_calls.py``): the same
    request and answer, less CPU; false sends every call through the SDK."""
    keepalive_s: float = Field(default=10.0, gt=0)
    """SSE comment interval while tools run."""

    limits: Limits = Field(default_factory=Limits)
    request_limits: RequestLimits = Field(default_factory=RequestLimits)
    mcp_pool: SessionPoolSettings = Field(default_factory=SessionPoolSettings)
    sampling: SamplingSettings = Field(default_factory=SamplingSettings)
    budget: BudgetSettings = Field(default_factory=BudgetSettings)
    background: BackgroundSettings = Field(default_factory=BackgroundSettings)
    model_list: list[ModelEntry] = Field(default_factory=list)
    """The models callers may use, in LiteLLM's shape (a LiteLLM config carries over). None:
    the demo, or OpenAI's with ``OPENAI_API_KEY``."""
    mcp_servers: list[RegisteredServer] = Field(default_factory=list)
    """Registered MCP servers: requests name them by ``server_label`` alone."""
    api_keys: list[ApiKeyConfig] = Field(default_factory=list)
    """Callers' keys, what each may use and its budget (usually from a Secret)."""

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        sources = [init_settings, env_settings, dotenv_settings]
        if path := _config_file():
            sources.append(_yaml_source(settings_cls, path))
        return tuple(sources)

    @model_validator(mode="after")
    def _check_unique(self) -> Settings:
        labels = [s.label for s in self.mcp_servers]
        if len(labels) != len(set(labels)):
            raise ValueError("mcp_servers: labels must be unique")
        ids = [k.id for k in self.api_keys]
        if len(ids) != len(set(ids)):
            raise ValueError("api_keys: ids must be unique")
        return self

    @property
    def demo_enabled(self) -> bool:
        return self.demo == "on" or (self.demo == "auto" and not self.model_list)

    def base_url(self) -> str:
        return self.public_base_url or f"http://{self.host}:{self.port}"

    def effective_models(self) -> list[ModelEntry]:
        """The configured models, or the demo's when none are configured."""
        if self.model_list or not self.demo_enabled:
            return self.model_list
        if os.environ.get("OPENAI_API_KEY"):
            return [
                ModelEntry(
                    model_name=name,
                    litellm_params={
                        "model": f"openai/{name}",
                        "api_key": "os.environ/OPENAI_API_KEY",
                    },
                )
                for name in OPENAI_DEFAULT_MODELS
            ]
        return [
            ModelEntry(
                model_name=DEMO_MODEL,
                litellm_params={
                    "model": "openai/scripted",
                    "api_base": f"{self.base_url()}/demo/model/v1",
                    "api_key": "demo",
                },
                model_info={"description": "scripted demo model, not an LLM"},
            )
        ]

    def effective_servers(self) -> list[RegisteredServer]:
        """Registered servers, plus the demo MCP server when the demo is on."""
        if not self.demo_enabled or any(s.label == "demo" for s in self.mcp_servers):
            return self.mcp_servers
        demo = RegisteredServer(
            label="demo",
            url=f"{self.base_url()}/demo/mcp",
            description="toolbridge demo tools (add, echo, time)",
        )
        return [*self.mcp_servers, demo]
