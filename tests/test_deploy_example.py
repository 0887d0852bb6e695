"""The example config in deploy/ stays loadable as the code changes."""

from __future__ import annotations

from pathlib import Path

import pytest

from app.config import Settings

ROOT = Path(__file__).resolve().parent.parent


def test_example_config_loads(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TOOLBRIDGE_CONFIG_FILE", str(ROOT / "deploy/toolbridge.example.yaml"))
    settings = Settings()
    assert [m.model_name for m in settings.model_list] == ["gpt-4o-mini"]
    assert settings.mcp_servers[0].label == "docs"
