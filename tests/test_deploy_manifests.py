"""deploy/: every kustomize overlay renders and every object is valid Kubernetes."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml

OVERLAYS = Path(__file__).resolve().parent.parent / "deploy" / "kubernetes" / "overlays"
KUBERNETES_VERSION = "1.32"


def render(overlay: str) -> list[dict[str, Any]]:
    kubectl = shutil.which("kubectl")
    assert kubectl, "kubectl (with kustomize) is part of this machine image"
    output = subprocess.run(
        [kubectl, "kustomize", str(OVERLAYS / overlay)], check=True, capture_output=True, text=True
    ).stdout
    return [doc for doc in yaml.safe_load_all(output) if doc]


@pytest.mark.parametrize("overlay", ["dev", "prod"])
def test_overlay_renders_valid_objects(overlay: str) -> None:
    objects = render(overlay)
    kinds = {o["kind"] for o in objects}
    assert {
        "Deployment",
        "Service",
        "ConfigMap",
        "HorizontalPodAutoscaler",
        "PodDisruptionBudget",
        "NetworkPolicy",
    } <= kinds
    for obj in objects:
        kubernetes_validate.validate(obj, KUBERNETES_VERSION, strict=True)


@pytest.mark.parametrize("overlay", ["dev", "prod"])
def test_pods_are_probed_locked_down_and_find_redis(overlay: str) -> None:
    deployment = next(o for o in render(overlay) if o["kind"] == "Deployment")
    pod = deployment["spec"]["template"]["spec"]
    container = pod["containers"][0]
    assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"
    assert container["livenessProbe"]["httpGet"]["path"] == "/healthz"
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert container["securityContext"]["readOnlyRootFilesystem"] is True
    env = {e["name"]: e for e in container["env"]}
    assert "TOOLBRIDGE_REDIS_URL" in env  # never the embedded Redis in a cluster
    assert env["TOOLBRIDGE_API_KEYS"]["valueFrom"]["secretKeyRef"]["name"] == "toolbridge-secrets"
    # /metrics needs its token in prod: the pod does not start without it in the Secret.
    metrics_token = env["TOOLBRIDGE_METRICS_TOKEN"]["valueFrom"]["secretKeyRef"]
    assert metrics_token["optional"] is (overlay != "prod")


def test_config_map_holds_a_loadable_config(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from app.config import Settings

    config_map = next(o for o in render("prod") if o["kind"] == "ConfigMap")
    path = tmp_path / "toolbridge.yaml"
    path.write_text(config_map["data"]["toolbridge.yaml"])
    monkeypatch.setenv("TOOLBRIDGE_CONFIG_FILE", str(path))
    assert [m.model_name for m in Settings().model_list] == ["gpt-4o-mini"]


def test_image_runs_the_make_run_command_as_a_non_root_user() -> None:
    dockerfile = (OVERLAYS.parent.parent / "Dockerfile").read_text().splitlines()
    assert 'CMD ["python", "-m", "app"]' in dockerfile  # what test_make_run starts for real
    assert "USER 10001" in dockerfile
    final_stage = dockerfile[
        max(i for i, line in enumerate(dockerfile) if line.startswith("FROM ")) :
    ]
    assert not any("pip install" in line or "apt-get" in line for line in final_stage)
