"""The model client against the scripted model over HTTP, through litellm (no mocks)."""

from __future__ import annotations

import anyio
import pytest

from app.config import ModelEntry
from app.errors import ModelNotFound, UpstreamModelError
from app.llm.client import ModelCall, ModelChunk, ModelClient, Usage
from tests.fixtures.servers import ServerThread


def client_for(scripted_model: ServerThread) -> ModelClient:
    entry = ModelEntry(
        model_name="m",
        litellm_params={
            "model": "openai/scripted",
            "api_base": f"{scripted_model.url}/v1",
            "api_key": "k",
        },
        model_info={"input_cost_per_token": 1e-6, "output_cost_per_token": 2e-6},
    )
    return ModelClient([entry], num_retries=0, timeout_s=30)


def collect(client: ModelClient, text: str, *, stream: bool) -> list[ModelChunk]:
    call = ModelCall(model="m", messages=[{"role": "user", "content": text}])

    async def go() -> list[ModelChunk]:
        return [chunk async for chunk in client.complete(call, stream=stream)]

    return anyio.run(go)


def test_streamed_and_whole_calls_give_the_same_answer_and_usage(
    scripted_model: ServerThread,
) -> None:
    client = client_for(scripted_model)
    whole = collect(client, "say hello there", stream=False)
    streamed = collect(client, "say hello there", stream=True)
    assert "".join(c.text for c in whole) == "".join(c.text for c in streamed) == "hello there"
    usages = [c.usage for c in streamed if c.usage] + [c.usage for c in whole if c.usage]
    assert usages[0] == usages[1] == Usage(prompt_tokens=3, completion_tokens=2)
    assert whole[-1].finish_reason == "stop"


def test_prices_cost_and_unknown_models(scripted_model: ServerThread) -> None:
    client = client_for(scripted_model)
    prices = client.prices("m")
    assert prices is not None and (prices.input, prices.output) == (1e-6, 2e-6)
    assert client.cost_usd("m", Usage(prompt_tokens=10, completion_tokens=5)) == pytest.approx(2e-5)
    assert client.prices("nope") is None
    with pytest.raises(ModelNotFound):
        client.check("nope")


def test_a_provider_failure_is_translated_once_with_its_status(
    scripted_model: ServerThread,
) -> None:
    with pytest.raises(UpstreamModelError) as caught:
        collect(client_for(scripted_model), "fail 503", stream=False)
    assert caught.value.status == 503
    assert caught.value.message.startswith("Model provider error for 'm'")
