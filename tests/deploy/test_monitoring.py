"""deploy/'s Grafana dashboard and Prometheus alerts: every query names a metric toolbridge
exports, the alerts parse and fire as intended (``promtool``), and the kustomize base ships
the dashboard."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest
import yaml
from prometheus_client.parser import text_string_to_metric_families

from tests.conftest import mcp_tool
from tests.fixtures.mcp_servers import RunningMcpServer
from tests.fixtures.prerequisites import require
from tests.fixtures.servers import ServerThread
from tests.test_deploy_manifests import render

ROOT = Path(__file__).resolve().parents[2]
DASHBOARD = ROOT / "deploy" / "kubernetes" / "base" / "monitoring" / "toolbridge-dashboard.json"
RULES = ROOT / "deploy" / "prometheus" / "toolbridge-rules.yml"
RULE_RESOURCE = ROOT / "deploy" / "kubernetes" / "components" / "prometheus-rule"
METRIC = re.compile(r"\btoolbridge_[a-z_]+\b")
SUFFIXES = {
    "counter": ("_total", "_created"),
    "histogram": ("_bucket", "_sum", "_count", "_created"),
    "gauge": ("",),
}


def promtool() -> str | None:
    """Debian's promtool (``.ci/run`` unpacks it to /opt/promtool), or one on the PATH."""
    unpacked = Path("/opt/promtool/usr/bin/promtool")
    return str(unpacked) if unpacked.exists() else shutil.which("promtool")


def exported_names(toolbridge: ServerThread) -> set[str]:
    """Every series name ``/metrics`` can carry (a family with no series yet included)."""
    text = httpx.get(f"{toolbridge.url}/metrics", timeout=30).text
    names = set()
    for family in text_string_to_metric_families(text):
        if family.name.startswith("toolbridge_"):
            names |= {family.name + suffix for suffix in SUFFIXES[family.type]}
    return names


def dashboard_queries() -> list[str]:
    panels = json.loads(DASHBOARD.read_text())["panels"]
    return [target["expr"] for panel in panels for target in panel["targets"]]


def rule_queries() -> list[str]:
    groups = yaml.safe_load(RULES.read_text())["groups"]
    return [rule["expr"] for group in groups for rule in group["rules"]]


def test_every_query_names_a_metric_toolbridge_exports(
    toolbridge: ServerThread, client: openai.OpenAI, mcp_server: RunningMcpServer
) -> None:
    client.chat.completions.create(  # some traffic, so labelled families have series too
        model="scripted-a",
        tools=[mcp_tool(mcp_server)],  # type: ignore[list-item]
        messages=[{"role": "user", "content": 'call calc__echo {"text": "m"}'}],
    )
    exported = exported_names(toolbridge)
    queries = dashboard_queries() + rule_queries()
    named = {name for query in queries for name in METRIC.findall(query)}
    assert named, "no query names a toolbridge metric"
    assert named <= exported, sorted(named - exported)
    # The panels an operator looks at first are there.
    # Every family /metrics exports is explained in docs/operations.md.
    operations = (ROOT / "docs" / "operations.md").read_text()
    families = {
        name.removesuffix("_total")
        for name in exported
        if not name.endswith(("_bucket", "_sum", "_count", "_created"))
    }
    assert not [f for f in families if f"`{f}" not in operations]
    for wanted in [
        "toolbridge_http_requests_total",
        "toolbridge_run_duration_seconds_bucket",
        "toolbridge_mcp_tool_calls_total",
        "toolbridge_mcp_tool_list_cache_total",
        "toolbridge_sampling_requests_total",
        "toolbridge_budget_spend_usd_total",
        "toolbridge_budget_refusals_total",
        "toolbridge_budget_holds_in_flight",
        "toolbridge_redis_errors_total",
    ]:
        assert any(wanted in query for query in dashboard_queries()), wanted


@pytest.mark.parametrize("overlay", ["dev", "prod"])
def test_the_base_ships_the_dashboard_for_grafanas_sidecar(overlay: str) -> None:
    config_map = next(
        o
        for o in render(overlay)
        if o["kind"] == "ConfigMap" and o["metadata"]["name"] == "toolbridge-grafana-dashboard"
    )
    assert config_map["metadata"]["labels"]["grafana_dashboard"] == "1"
    shipped = json.loads(config_map["data"]["toolbridge-dashboard.json"])
    assert shipped == json.loads(DASHBOARD.read_text())


def test_the_prometheus_rule_is_the_plain_rules(tmp_path: Path) -> None:
    kubectl = shutil.which("kubectl")
    assert kubectl, "kubectl (with kustomize) is part of this machine image"
    overlay = tmp_path / "with-rules"
    overlay.mkdir()
    (overlay / "kustomization.yaml").write_text(
        yaml.safe_dump(
            {
                "apiVersion": "kustomize.config.k8s.io/v1beta1",
                "kind": "Kustomization",
                "resources": [os.path.relpath(ROOT / "deploy/kubernetes/overlays/prod", overlay)],
                "components": [os.path.relpath(RULE_RESOURCE, overlay)],
            }
        )
    )
    output = subprocess.run(
        [kubectl, "kustomize", str(overlay)], check=True, capture_output=True, text=True
    ).stdout
    objects: list[dict[str, Any]] = [o for o in yaml.safe_load_all(output) if o]
    rule = next(o for o in objects if o["kind"] == "PrometheusRule")
    assert rule["spec"] == yaml.safe_load(RULES.read_text())


def test_the_alerts_pass_promtool_and_fire_as_intended() -> None:
    tool = promtool()
    require(tool is not None, "promtool (Debian's prometheus package; .ci/run unpacks it)")
    assert tool is not None
    checked = subprocess.run([tool, "check", "rules", str(RULES)], capture_output=True, text=True)
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert "SUCCESS: 7 rules found" in checked.stdout
    tested = subprocess.run(
        [tool, "test", "rules", "alerts_test.yml"],
        cwd=Path(__file__).parent,
        capture_output=True,
        text=True,
    )
    assert tested.returncode == 0, tested.stdout + tested.stderr
