"""A stdio server's stderr reaches our log as JSON lines with its label, never raw."""

from __future__ import annotations

import json
import logging
import time
from typing import Any

import openai
import pytest

from app.logs import JsonFormatter
from tests.conftest import TEST_KEY


def test_stderr_lines_are_logged_with_the_server_label(
    toolbridge_factory: Any, caplog: pytest.LogCaptureFixture, capfd: pytest.CaptureFixture[str]
) -> None:
    # A toolbridge of its own: a warm stdio server from an earlier test would not start (and
    # say so on stderr) again.
    bridge = toolbridge_factory()
    client = openai.OpenAI(base_url=f"{bridge.url}/v1", api_key=TEST_KEY, max_retries=0)
    with caplog.at_level(logging.INFO, logger="toolbridge.mcp.stderr"):
        completion = client.chat.completions.create(
            model="scripted-a",
            tools=[{"type": "mcp", "server_label": "stdio_calc"}],  # type: ignore[list-item]
            messages=[{"role": "user", "content": 'call stdio_calc__add {"a": 1, "b": 2}'}],
        )
        assert completion.choices[0].message.content == "done: stdio_calc__add=3"
        deadline = time.monotonic() + 10
        while not [r for r in caplog.records if r.name == "toolbridge.mcp.stderr"]:
            assert time.monotonic() < deadline, "no stderr line was logged"
            time.sleep(0.05)
    record = next(r for r in caplog.records if r.name == "toolbridge.mcp.stderr")
    assert record.getMessage() == "stdio test server starting"
    assert record.levelname == "INFO"
    line = json.loads(JsonFormatter().format(record))
    assert line["server"] == "stdio_calc" and line["message"] == "stdio test server starting"
    assert "stdio test server starting" not in capfd.readouterr().err  # not written raw
