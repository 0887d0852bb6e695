"""``python -m app --check``: the configuration, checked without serving.

Settings that do not load at all (a bad value, a file that does not parse, a secret's variable
missing) stop here as they stop start-up. On top, this finds what loads but cannot work: a key
whose secret's variable is unset, a key that names a server nobody registered, a header or
stdio variable read from an unset variable, a stdio command that is not installed, a sampling
model that is not configured. It prints what it found (models, servers, keys by id: never a
secret, URLs redacted) and the problems; ``python -m app`` logs the same problems at start-up.
"""

from __future__ import annotations

import os
import shutil
from dataclasses import dataclass, field
from fnmatch import fnmatchcase

from app.config import ModelEntry, Settings
from app.redact import redact_url

_FROM_ENV = "os.environ/"


@dataclass
class Findings:
    summary: list[str] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    """What will not work as configured: ``--check`` exits 1."""
    warnings: list[str] = field(default_factory=list)
    """What works, but is rarely meant in production."""

    def report(self) -> str:
        lines = [*self.summary]
        lines += [f"warning: {w}" for w in self.warnings]
        lines += [f"problem: {p}" for p in self.problems]
        verdict = f"{len(self.problems)} problem(s)" if self.problems else "OK"
        return "\n".join([*lines, verdict])


def _model_line(entry: ModelEntry) -> str:
    model = entry.litellm_params.get("model", "?")
    base = entry.litellm_params.get("api_base")
    where = f" at {redact_url(str(base))}" if base else ""
    return f"  {entry.model_name}: {model}{where}"


def _missing_variable(value: object) -> str | None:
    if isinstance(value, str) and value.startswith(_FROM_ENV):
        name = value.removeprefix(_FROM_ENV)
        return None if name in os.environ else name
    return None


def check(settings: Settings) -> Findings:
    found = Findings()
    _models(settings, found)
    _servers(settings, found)
    _keys(settings, found)
    _service(settings, found)
    return found


def _models(settings: Settings, found: Findings) -> None:
    names = {m.model_name for m in settings.model_list}
    if settings.demo_enabled:
        found.summary.append("models: the demo (no model_list configured)")
    else:
        found.summary.append(f"models ({len(settings.model_list)}):")
        found.summary += [_model_line(m) for m in settings.model_list]
    for entry in settings.model_list:
        for param, value in entry.litellm_params.items():
            if (name := _missing_variable(value)) is not None:
                found.problems.append(
                    f"model {entry.model_name!r}: {param} reads {name}, which is not set"
                )
    sampling = settings.sampling
    wanted = [sampling.default_model, *sampling.cross_family.values()]
    for model in (m for m in wanted if m is not None):
        if model not in names and not settings.demo_enabled:
            found.problems.append(f"sampling names the model {model!r}, which is not configured")


def _servers(settings: Settings, found: Findings) -> None:
    found.summary.append(f"mcp servers ({len(settings.mcp_servers)}):")
    for server in settings.mcp_servers:
        where = " ".join(server.command or []) if server.transport == "stdio" else server.url
        auth = " (oauth2 client credentials)" if server.auth_type == "oauth2" else ""
        found.summary.append(
            f"  {server.label}: {server.transport} {redact_url(where or '')}{auth}"
        )
        unset = [
            f"header {h} reads {v}"
            for h, v in server.headers_from_env.items()
            if v not in os.environ
        ]
        unset += [
            f"env {n} reads {v}" for n, v in server.env_from_env.items() if v not in os.environ
        ]
        for what in unset:
            found.problems.append(f"mcp server {server.label!r}: {what}, which is not set")
        if server.command and shutil.which(server.command[0]) is None:
            found.problems.append(
                f"mcp server {server.label!r}: the command {server.command[0]!r} is not found"
            )


def _keys(settings: Settings, found: Findings) -> None:
    labels = {s.label for s in settings.mcp_servers}
    models = [m.model_name for m in settings.model_list]
    found.summary.append(f"api keys ({len(settings.api_keys)}):")
    secrets: dict[str, str] = {}
    for key in settings.api_keys:
        limits = {
            name: value for name, value in key.budget.model_dump().items() if value is not None
        }
        budget = ", ".join(f"{n} {v:g}" for n, v in limits.items()) or "no limit"
        found.summary.append(f"  {key.id}: budget {budget}")
        secret = key.secret()
        if not secret:
            source = f"the variable {key.key_env}, which is not set" if key.key_env else "nothing"
            found.problems.append(f"api key {key.id!r}: its secret comes from {source}")
        elif secret in secrets:
            found.problems.append(
                f"api keys {secrets[secret]!r} and {key.id!r} have the same secret "
                "(the first one would always win)"
            )
        else:
            secrets[secret] = key.id
        for label in key.mcp_servers:
            if label != "*" and label not in labels:
                found.problems.append(
                    f"api key {key.id!r}: mcp_servers names {label!r}, which is not registered"
                )
        if models and not any(fnmatchcase(m, p) for m in models for p in key.models):
            found.warnings.append(f"api key {key.id!r}: its models match no configured model")


def _service(settings: Settings, found: Findings) -> None:
    redis = redact_url(settings.redis_url) if settings.redis_url else "embedded (started here)"
    cluster = " (Redis Cluster)" if settings.redis_cluster else ""
    found.summary.append(f"redis: {redis}{cluster}")
    if settings.allow_anonymous:
        found.warnings.append("open mode (TOOLBRIDGE_ALLOW_ANONYMOUS): any caller is served")
    elif not settings.api_keys:
        found.problems.append("no API keys are configured: every request would get 401")
    if settings.metrics_token is None:
        found.warnings.append("/metrics answers anyone (TOOLBRIDGE_METRICS_TOKEN is not set)")
