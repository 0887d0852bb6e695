"""The hot routes (``HotRoutes`` in ``app/api/json_route.py``) answer from a middleware, ahead
of FastAPI's router: their answers, errors and metrics are what FastAPI's path gave."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import httpx

from tests.api.test_metrics import scrape
from tests.conftest import TEST_KEY
from tests.fixtures.servers import ServerThread

HEADERS = {"Authorization": f"Bearer {TEST_KEY}", "Content-Type": "application/json"}


def _in_pieces(body: dict[str, Any], size: int = 7) -> Iterator[bytes]:
    """The body in small pieces: sent chunked, it reaches the app as several messages."""
    data = json.dumps(body).encode()
    for start in range(0, len(data), size):
        yield data[start : start + size]


def test_a_body_in_many_pieces_is_read_whole(toolbridge: ServerThread) -> None:
    body = {"model": "scripted-a", "messages": [{"role": "user", "content": "say pieces"}]}
    answer = httpx.post(
        f"{toolbridge.url}/v1/chat/completions", content=_in_pieces(body), headers=HEADERS
    )
    assert answer.status_code == 200, answer.text
    assert answer.json()["choices"][0]["message"]["content"] == "pieces"


def test_a_body_the_lean_call_declines_reaches_fastapi_whole(toolbridge: ServerThread) -> None:
    """Not valid: FastAPI's handler reads the body again, and names the field."""
    body = {"model": "scripted-a", "input": "hi", "temperature": "hot"}
    answer = httpx.post(f"{toolbridge.url}/v1/responses", content=_in_pieces(body), headers=HEADERS)
    assert answer.status_code == 400, answer.text
    assert answer.json()["error"]["param"] == "temperature"


def test_errors_and_metrics_are_the_app_s(toolbridge: ServerThread) -> None:
    before = scrape(toolbridge)
    url = f"{toolbridge.url}/v1/chat/completions"
    body = {"model": "no-such-model", "messages": [{"role": "user", "content": "hi"}]}
    missing = httpx.post(url, json=body, headers=HEADERS)  # raised by the endpoint
    assert missing.status_code == 404, missing.text
    assert missing.json()["error"]["code"] == "model_not_found"
    wrong_key = httpx.post(url, json=body, headers={"Authorization": "Bearer nope"})  # by auth
    assert wrong_key.status_code == 401, wrong_key.text
    assert wrong_key.json()["error"]["code"] == "invalid_api_key"
    assert wrong_key.headers["x-request-id"].startswith("req_")
    after = scrape(toolbridge)
    for status in ("404", "401"):
        key = (
            "toolbridge_http_requests_total",
            (("route", "/v1/chat/completions"), ("status", status)),
        )
        assert after.get(key, 0.0) - before.get(key, 0.0) == 1
