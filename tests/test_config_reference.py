"""The configuration reference and ``.env.example`` are generated from the settings models, and
stay so: a field added, renamed or re-documented without regenerating fails here."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from app.config import Settings
from app.config_reference import ENV_EXAMPLE, REFERENCE, env_example, reference, settings_fields

ROOT = Path(__file__).resolve().parent.parent


def test_the_reference_and_env_example_are_current() -> None:
    fix = "run `python -m app.config_reference` and commit the result"
    assert REFERENCE.read_text() == reference(), fix
    assert ENV_EXAMPLE.read_text() == env_example(), fix


def test_every_setting_is_documented_and_named_once() -> None:
    for path, field in settings_fields():
        assert field.description, f"{'.'.join(path)} has no docstring"
    names = [line.split("=", 1)[0] for line in env_example().splitlines() if "=" in line]
    assert len(names) == len(set(names))


def test_the_env_example_is_what_settings_read(tmp_path: Path) -> None:
    """Uncommented, every line of .env.example that has a value loads, and gives the
    defaults (one without a value is a setting that is unset by default)."""
    lines = [line.removeprefix("# ") for line in ENV_EXAMPLE.read_text().splitlines()]
    settings_lines = [
        line for line in lines if line.startswith("TOOLBRIDGE_") and not line.endswith("=")
    ]
    (tmp_path / ".env").write_text("\n".join(settings_lines) + "\n")
    clean = {k: v for k, v in os.environ.items() if not k.startswith("TOOLBRIDGE_")}
    script = (
        "from app.config import Settings; import json; "
        "print(Settings().model_dump_json(exclude={'model_list', 'mcp_servers', 'api_keys'}))"
    )
    loaded = subprocess.run(
        [sys.executable, "-c", script],
        cwd=tmp_path,
        env={**clean, "PYTHONPATH": str(ROOT)},
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    defaults = Settings.model_construct().model_dump_json(
        exclude={"model_list", "mcp_servers", "api_keys"}
    )
    assert loaded.strip() == defaults
