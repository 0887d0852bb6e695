"""``python -m app --check``: the configuration checked without serving; what it found is
printed (ids, never secrets), a problem exits 1, a configuration that does not load exits 2."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent

CONFIG: dict[str, Any] = {
    "model_list": [
        {
            "model_name": "gpt-4o-mini",
            "litellm_params": {"model": "openai/gpt-4o-mini", "api_key": "os.environ/CHECK_OAI"},
        }
    ],
    "mcp_servers": [
        {
            "label": "docs",
            "url": "https://docs.example/mcp?token=url-SECRET",
            "headers_from_env": {"Authorization": "CHECK_DOCS_TOKEN"},
        },
        {"label": "local", "transport": "stdio", "command": [sys.executable, "-m", "x"]},
    ],
    "api_keys": [
        {"id": "team-a", "key_env": "CHECK_TEAM_A", "budget": {"daily_usd": 5}},
        {"id": "ci", "key": "sk-ci-SECRET", "mcp_servers": ["docs"]},
    ],
}
ENVIRONMENT = {
    "CHECK_OAI": "sk-oai-SECRET",
    "CHECK_DOCS_TOKEN": "Bearer docs-SECRET",
    "CHECK_TEAM_A": "sk-team-a-SECRET",
}


def check(tmp_path: Path, config: dict[str, Any], env: dict[str, str]) -> tuple[int, str]:
    path = tmp_path / "toolbridge.yaml"
    path.write_text(json.dumps(config))
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("TOOLBRIDGE_", "CHECK_"))}
    done = subprocess.run(
        [sys.executable, "-m", "app", "--check"],
        env={**clean, **env, "TOOLBRIDGE_CONFIG_FILE": str(path), "PYTHONPATH": str(ROOT)},
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
    )
    return done.returncode, done.stdout + done.stderr


def test_a_good_configuration_is_described_without_its_secrets(tmp_path: Path) -> None:
    code, output = check(tmp_path, CONFIG, ENVIRONMENT)
    assert code == 0, output
    assert "  gpt-4o-mini: openai/gpt-4o-mini" in output
    assert "  docs: streamable_http https://docs.example/mcp?token=REDACTED" in output
    assert "  team-a: budget daily_usd 5" in output and "  ci: budget no limit" in output
    assert "SECRET" not in output
    assert output.rstrip().endswith("OK")


def test_what_cannot_work_is_named_and_exits_1(tmp_path: Path) -> None:
    config = json.loads(json.dumps(CONFIG))
    config["api_keys"][1]["mcp_servers"] = ["nowhere"]
    config["mcp_servers"][1]["command"] = ["no-such-server-binary"]
    code, output = check(tmp_path, config, {"CHECK_OAI": "x"})
    assert code == 1, output
    problems = [line for line in output.splitlines() if line.startswith("problem: ")]
    assert problems == [
        "problem: mcp server 'docs': header Authorization reads CHECK_DOCS_TOKEN, which is not set",
        "problem: mcp server 'local': the command 'no-such-server-binary' is not found",
        "problem: api key 'team-a': its secret comes from the variable CHECK_TEAM_A, which is "
        "not set",
        "problem: api key 'ci': mcp_servers names 'nowhere', which is not registered",
    ]
    assert output.rstrip().endswith("4 problem(s)")


def test_a_configuration_that_does_not_load_exits_2(tmp_path: Path) -> None:
    code, output = check(tmp_path, {"limits": {"max_turns": 0}}, {})
    assert code == 2 and "configuration error" in output and "max_turns" in output
