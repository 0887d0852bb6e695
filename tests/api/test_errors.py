"""Every failure leaves as OpenAI's error envelope with the right status; never a traceback."""

from __future__ import annotations

import json
from typing import Any

import httpx
import openai
import pytest

from tests.conftest import LIMITED_KEY, TEST_KEY
from tests.fixtures.mcp_servers import RunningMcpServer
from tests.fixtures.servers import ServerThread


def post(
    toolbridge: ServerThread, body: Any, *, key: str | None = TEST_KEY, raw: bytes | None = None
) -> httpx.Response:
    headers = {"Authorization": f"Bearer {key}"} if key else {}
    if raw is not None:
        headers["Content-Type"] = "application/json"
        return httpx.post(
            f"{toolbridge.url}/v1/chat/completions", content=raw, headers=headers, timeout=30
        )
    return httpx.post(
        f"{toolbridge.url}/v1/chat/completions", json=body, headers=headers, timeout=30
    )


def error_of(response: httpx.Response) -> dict[str, Any]:
    body = response.json()
    assert set(body) == {"error"}
    assert set(body["error"]) == {"message", "type", "param", "code"}
    return dict(body["error"])


HELLO = {"model": "scripted-a", "messages": [{"role": "user", "content": "hi"}]}


def test_malformed_json_is_400(toolbridge: ServerThread) -> None:
    response = post(toolbridge, None, raw=b'{"model": "scripted-a", "messages": [')
    assert response.status_code == 400
    assert "parse the JSON body" in error_of(response)["message"]


@pytest.mark.parametrize(
    ("body", "param"),
    [
        ({"messages": [{"role": "user", "content": "hi"}]}, "model"),
        ({"model": "scripted-a", "messages": []}, "messages"),
        (
            {"model": "scripted-a", "messages": [{"role": "wizard", "content": "x"}]},
            "messages[0].role",
        ),
        ({**HELLO, "temperature": "hot"}, "temperature"),
        (
            {
                **HELLO,
                "tools": [{"type": "mcp", "server_label": "bad label!", "server_url": "http://x"}],
            },
            "tools[0].server_label",
        ),
    ],
)
def test_schema_errors_are_400_with_param(
    toolbridge: ServerThread, body: dict[str, Any], param: str
) -> None:
    response = post(toolbridge, body)
    assert response.status_code == 400
    error = error_of(response)
    assert error["type"] == "invalid_request_error"
    assert error["param"] == param


@pytest.mark.parametrize(
    ("path", "param"),
    [
        ("/v1/conversations/conv_x/items?limit=0", "limit"),
        ("/v1/responses/resp_x?stream=true&starting_after=-5", "starting_after"),
        ("/v1/responses/resp_x/input_items?order=sideways", "order"),
    ],
)
def test_query_parameter_errors_are_400_naming_the_parameter(
    toolbridge: ServerThread, path: str, param: str
) -> None:
    """Not "could not parse the JSON body": a GET has none."""
    response = httpx.get(
        f"{toolbridge.url}{path}", headers={"Authorization": f"Bearer {TEST_KEY}"}, timeout=30
    )
    assert response.status_code == 400
    error = error_of(response)
    assert error["param"] == param and error["message"].startswith(f"Invalid value for '{param}'")


@pytest.mark.parametrize(
    ("content_type", "said"),
    [
        ("application/x-www-form-urlencoded", "sent as 'application/x-www-form-urlencoded'"),
        ("text/plain; charset=utf-8", "sent as 'text/plain'"),
        (None, "sent without one"),
    ],
)
def test_a_body_not_sent_as_json_is_400_saying_so(
    toolbridge: ServerThread, content_type: str | None, said: str
) -> None:
    """curl's ``-d`` sends a form: the error says what to send, not that the JSON is bad."""
    headers = {"Authorization": f"Bearer {TEST_KEY}"}
    if content_type is not None:
        headers["Content-Type"] = content_type
    response = httpx.post(
        f"{toolbridge.url}/v1/chat/completions",
        content=json.dumps(HELLO).encode(),
        headers=headers,
        timeout=30,
    )
    assert response.status_code == 400
    message = error_of(response)["message"]
    assert "'Content-Type: application/json'" in message and said in message


def test_a_missing_previous_response_is_404_naming_it(client: openai.OpenAI) -> None:
    with pytest.raises(openai.NotFoundError) as caught:
        client.responses.create(model="scripted-a", input="x", previous_response_id="resp_gone")
    assert caught.value.param == "previous_response_id"


def test_a_response_names_its_conversation_in_errors(client: openai.OpenAI) -> None:
    """The request's own field, not the Conversations API's path parameter or a union branch."""
    with pytest.raises(openai.NotFoundError) as missing:
        client.responses.create(model="scripted-a", input="x", conversation="conv_missing")
    with pytest.raises(openai.BadRequestError) as mistyped:
        client.responses.create(
            model="scripted-a", input="x", extra_body={"conversation": {"id": 5}}
        )
    assert missing.value.param == mistyped.value.param == "conversation"


def test_unknown_model_is_404_model_not_found(client: openai.OpenAI) -> None:
    with pytest.raises(openai.NotFoundError) as caught:
        client.chat.completions.create(
            model="gpt-nope", messages=[{"role": "user", "content": "x"}]
        )
    assert caught.value.code == "model_not_found"


def test_missing_or_unknown_key_is_401(toolbridge: ServerThread) -> None:
    for key in (None, "sk-wrong"):
        response = post(toolbridge, HELLO, key=key)
        assert response.status_code == 401
        assert error_of(response)["code"] == "invalid_api_key"


def test_key_policies_are_enforced_with_403(
    toolbridge: ServerThread, mcp_server: RunningMcpServer
) -> None:
    cases = [
        ({**HELLO}, "model"),  # the limited key may use scripted-b only
        (
            {
                **HELLO,
                "model": "scripted-b",
                "tools": [{"type": "mcp", "server_label": "x", "server_url": mcp_server.url}],
            },
            "tools[0].server_url",
        ),
        (
            {
                **HELLO,
                "model": "scripted-b",
                "tools": [{"type": "mcp", "server_label": "stdio_calc"}],
            },
            "tools[0].server_label",
        ),
    ]
    for body, param in cases:
        response = post(toolbridge, body, key=LIMITED_KEY)
        assert response.status_code == 403, body
        assert error_of(response)["param"] == param
    allowed = post(
        toolbridge,
        {**HELLO, "model": "scripted-b", "tools": [{"type": "mcp", "server_label": "calc"}]},
        key=LIMITED_KEY,
    )
    assert allowed.status_code == 200


def test_dead_mcp_server_is_424_naming_the_label_never_the_headers(
    toolbridge: ServerThread,
) -> None:
    response = post(
        toolbridge,
        {
            **HELLO,
            "tools": [
                {
                    "type": "mcp",
                    "server_label": "gone",
                    "server_url": "http://127.0.0.1:9/mcp",
                    "headers": {"X-Api-Key": "hunter2-secret"},
                    "authorization": "tok-secret",
                }
            ],
        },
    )
    assert response.status_code == 424
    error = error_of(response)
    assert error["type"] == "external_connector_error"
    assert "'gone'" in error["message"]
    assert "hunter2" not in response.text
    assert "tok-secret" not in response.text


def test_unknown_registered_label_is_400(toolbridge: ServerThread) -> None:
    response = post(toolbridge, {**HELLO, "tools": [{"type": "mcp", "server_label": "nosuch"}]})
    assert response.status_code == 400
    assert error_of(response)["param"] == "tools[0].server_url"


def test_approval_demands_point_to_responses(
    toolbridge: ServerThread, mcp_server: RunningMcpServer
) -> None:
    response = post(
        toolbridge,
        {**HELLO, "tools": [{"type": "mcp", "server_label": "calc", "require_approval": "always"}]},
    )
    assert response.status_code == 400
    error = error_of(response)
    assert "/v1/responses" in error["message"]
    assert error["param"] == "tools[0].require_approval"


def test_unsupported_connector_is_400(toolbridge: ServerThread) -> None:
    response = post(
        toolbridge,
        {
            **HELLO,
            "tools": [
                {"type": "mcp", "server_label": "drive", "connector_id": "connector_googledrive"}
            ],
        },
    )
    assert response.status_code == 400
    assert "connector_id" in error_of(response)["message"]


def test_non_http_server_url_is_400(toolbridge: ServerThread) -> None:
    response = post(
        toolbridge,
        {
            **HELLO,
            "tools": [{"type": "mcp", "server_label": "f", "server_url": "file:///etc/passwd"}],
        },
    )
    assert response.status_code == 400


@pytest.mark.parametrize(
    ("script", "status"), [("fail 500", 502), ("fail 503", 503), ("fail 429", 503)]
)
def test_model_provider_failure_is_502_or_503(
    toolbridge: ServerThread, script: str, status: int
) -> None:
    response = post(
        toolbridge, {"model": "scripted-a", "messages": [{"role": "user", "content": script}]}
    )
    assert response.status_code == status
    error = error_of(response)
    assert error["type"] == "server_error"
    assert "scripted-a" in error["message"]
    assert "sk-provider" not in response.text


def test_duplicate_server_labels_are_400(toolbridge: ServerThread) -> None:
    tool = {"type": "mcp", "server_label": "calc"}
    response = post(toolbridge, {**HELLO, "tools": [tool, tool]})
    assert response.status_code == 400
    assert error_of(response)["param"] == "tools[1].server_label"


def test_unknown_route_is_enveloped_404(toolbridge: ServerThread) -> None:
    response = httpx.get(f"{toolbridge.url}/v1/nope")
    assert response.status_code == 404
    assert error_of(response)["code"] == "not_found"


def test_body_over_the_limit_is_413(toolbridge_factory: Any) -> None:
    server = toolbridge_factory(request_limits={"max_body_bytes": 2048})
    big = {**HELLO, "messages": [{"role": "user", "content": "x" * 4096}]}
    assert post(server, big).status_code == 413

    def chunks() -> Any:  # no content-length: the limit holds while reading
        yield json.dumps(big).encode()

    response = httpx.post(
        f"{server.url}/v1/chat/completions",
        content=chunks(),
        timeout=30,
        headers={"Authorization": f"Bearer {TEST_KEY}", "Content-Type": "application/json"},
    )
    assert response.status_code == 413
    assert error_of(response)["code"] == "request_too_large"


def test_too_many_messages_tools_or_servers_is_400(
    toolbridge_factory: Any, mcp_server: RunningMcpServer
) -> None:
    server = toolbridge_factory(
        request_limits={"max_messages": 2, "max_tools": 3, "max_mcp_servers": 1}
    )
    many = {**HELLO, "messages": [{"role": "user", "content": "x"}] * 3}
    assert error_of(post(server, many))["param"] == "messages"
    tools = [
        {"type": "mcp", "server_label": f"s{i}", "server_url": mcp_server.url} for i in range(2)
    ]
    response = post(server, {**HELLO, "tools": tools})
    assert response.status_code == 400 and "MCP servers" in error_of(response)["message"]
