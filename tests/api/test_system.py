"""Models list and health probes."""

from __future__ import annotations

import gc

import httpx
import openai
import pytest

from app.main import GC_THRESHOLDS
from tests.conftest import CLUSTER, LIMITED_KEY
from tests.fixtures.servers import ServerThread


def test_models_lists_the_models_the_key_may_use(
    client: openai.OpenAI, toolbridge: ServerThread
) -> None:
    assert [m.id for m in client.models.list()] == ["scripted-a", "scripted-b"]
    limited = openai.OpenAI(base_url=f"{toolbridge.url}/v1", api_key=LIMITED_KEY)
    assert [m.id for m in limited.models.list()] == ["scripted-b"]


def test_a_model_is_retrieved_only_by_a_key_that_may_use_it(
    client: openai.OpenAI, toolbridge: ServerThread
) -> None:
    """``client.models.retrieve``: what the list shows; another key's model is unknown (404)."""
    model = client.models.retrieve("scripted-a")
    assert (model.id, model.object, model.owned_by) == ("scripted-a", "model", "toolbridge")
    limited = openai.OpenAI(base_url=f"{toolbridge.url}/v1", api_key=LIMITED_KEY, max_retries=0)
    assert limited.models.retrieve("scripted-b").id == "scripted-b"
    for who, name in ((limited, "scripted-a"), (client, "gpt-nope"), (client, "org/gpt-nope")):
        with pytest.raises(openai.NotFoundError) as caught:
            who.models.retrieve(name)
        assert caught.value.code == "model_not_found" and caught.value.param == "model"


def test_healthz_and_readyz(toolbridge: ServerThread) -> None:
    assert httpx.get(f"{toolbridge.url}/healthz").json() == {"status": "ok"}
    ready = httpx.get(f"{toolbridge.url}/readyz")
    assert ready.status_code == 200
    assert ready.json()["redis"] == "ok"
    if CLUSTER:  # the cluster's state and size are reported
        assert ready.json()["redis_cluster"] == {"state": "ok", "primaries": 3}
    else:
        assert "redis_cluster" not in ready.json()


def test_readyz_fails_when_redis_is_unreachable(toolbridge_factory) -> None:  # type: ignore[arg-type]
    broken = toolbridge_factory(redis_url="redis://127.0.0.1:9/0")
    ready = httpx.get(f"{broken.url}/readyz", timeout=30)
    assert ready.status_code == 503
    assert ready.json()["status"] == "unavailable"
    assert httpx.get(f"{broken.url}/healthz").status_code == 200


def test_the_collector_is_tuned_while_serving(toolbridge: ServerThread) -> None:
    """A run's objects die young under the serving thresholds (see ``GC_THRESHOLDS``)."""
    assert gc.get_threshold() == GC_THRESHOLDS
