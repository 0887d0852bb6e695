"""Configuration from YAML plus environment, in LiteLLM's model_list shape."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import ValidationError

from app.config import DEMO_MODEL, Settings

YAML = """
model_list:
  - model_name: fast
    litellm_params: {model: openai/gpt-4o-mini, api_key: os.environ/OPENAI_API_KEY}
    model_info: {input_cost_per_token: 0.00000015}
mcp_servers:
  - label: docs
    url: https://docs.example.com/mcp
    headers_from_env: {Authorization: DOCS_TOKEN}
api_keys:
  - id: team-a
    key_env: TEAM_A_KEY
    models: [fast]
limits:
  max_turns: 4
"""


def test_yaml_file_and_env_override(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "toolbridge.yaml"
    path.write_text(YAML)
    monkeypatch.setenv("TOOLBRIDGE_CONFIG_FILE", str(path))
    monkeypatch.setenv("TOOLBRIDGE_LIMITS__MAX_TOOL_CALLS", "7")
    monkeypatch.setenv("TOOLBRIDGE_PORT", "9000")
    monkeypatch.setenv("DOCS_TOKEN", "Bearer docs-secret")
    monkeypatch.setenv("TEAM_A_KEY", "sk-team-a")
    settings = Settings()
    assert settings.port == 9000
    assert settings.limits.max_turns == 4
    assert settings.limits.max_tool_calls == 7
    assert [m.model_name for m in settings.effective_models()] == ["fast"]
    assert settings.mcp_servers[0].headers() == {"Authorization": "Bearer docs-secret"}
    assert settings.api_keys[0].secret() == "sk-team-a"
    assert not settings.demo_enabled


def test_api_keys_from_env_json(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TOOLBRIDGE_API_KEYS", '[{"id": "ci", "key": "sk-ci"}]')
    settings = Settings()
    assert settings.api_keys[0].id == "ci"
    assert settings.api_keys[0].secret() == "sk-ci"
    assert "sk-ci" not in repr(settings)


def test_demo_when_nothing_is_configured(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    settings = Settings(port=8123)
    assert [m.model_name for m in settings.effective_models()] == [DEMO_MODEL]
    assert [s.label for s in settings.effective_servers()] == ["demo"]
    monkeypatch.setenv("OPENAI_API_KEY", "sk-real")
    assert "gpt-4o-mini" in [m.model_name for m in settings.effective_models()]


def test_invalid_server_config_is_rejected() -> None:
    with pytest.raises(ValidationError, match="stdio transport needs 'command'"):
        Settings(mcp_servers=[{"label": "x", "transport": "stdio"}])
    with pytest.raises(ValidationError, match="labels must be unique"):
        Settings(mcp_servers=[{"label": "x", "url": "http://a"}, {"label": "x", "url": "http://b"}])
