"""Registered MCP servers behind OAuth: client credentials (SEP-1046) against a real
authorization server and an MCP server the SDK's server-side auth protects."""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from pydantic import ValidationError

from app.config import RegisteredServer
from tests.conftest import TEST_KEY
from tests.fixtures.oauth import SCOPE, Protected, protected_mcp_server
from tests.fixtures.servers import ServerThread
from tests.fixtures.waiting import wait_until

SECRET = "s3cr3t-value-never-shown"


@pytest.fixture
def protected() -> Iterator[Protected]:
    with protected_mcp_server() as running:
        running.authorization.secrets["toolbridge"] = SECRET
        yield running


@pytest.fixture
def bridge_for(
    toolbridge_factory: Callable[..., ServerThread],
    protected: Protected,
    monkeypatch: pytest.MonkeyPatch,
) -> Callable[..., ServerThread]:
    monkeypatch.setenv("GUARDED_SECRET", SECRET)

    def start(**oauth: Any) -> ServerThread:
        server = {
            "label": "guarded",
            "url": protected.mcp_url,
            "auth_type": "oauth2",
            "oauth2_flow": "client_credentials",
            "client_id": "toolbridge",
            "client_secret": "os.environ/GUARDED_SECRET",
            "issuer": protected.authorization.url,
        } | oauth
        return toolbridge_factory(mcp_servers=[{k: v for k, v in server.items() if v is not None}])

    return start


def ask(bridge: ServerThread, script: str = 'call guarded__echo {"text": "hi"}') -> httpx.Response:
    return httpx.post(
        f"{bridge.url}/v1/chat/completions",
        json={
            "model": "scripted-a",
            "tools": [{"type": "mcp", "server_label": "guarded"}],
            "messages": [{"role": "user", "content": script}],
        },
        timeout=60,
        headers={"Authorization": f"Bearer {TEST_KEY}"},
    )


def answer(response: httpx.Response) -> str:
    assert response.status_code == 200, response.text
    return str(response.json()["choices"][0]["message"]["content"])


@pytest.mark.parametrize("method", ["client_secret_basic", "client_secret_post"])
def test_client_credentials_with_a_secret(
    bridge_for: Callable[..., ServerThread], protected: Protected, method: str
) -> None:
    bridge = bridge_for(token_endpoint_auth_method=method)
    assert answer(ask(bridge)) == "done: guarded__echo=hi"
    (request,) = protected.authorization.token_requests
    assert request["auth_method"] == method and request["grant_type"] == "client_credentials"
    assert request["resource"] == protected.mcp_url  # RFC 8707
    assert request["scope"] == SCOPE  # from the server's metadata
    # The extension is declared to the server.
    declared = answer(ask(bridge, "call guarded__declared {}"))
    assert "io.modelcontextprotocol/oauth-client-credentials" in declared
    assert len(protected.authorization.token_requests) == 1  # the token was reused


def test_private_key_jwt(
    bridge_for: Callable[..., ServerThread], protected: Protected, monkeypatch: pytest.MonkeyPatch
) -> None:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    private_pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    ).decode()
    public_pem = (
        key.public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        .decode()
    )
    protected.authorization.public_keys["toolbridge"] = public_pem
    monkeypatch.setenv("GUARDED_KEY", private_pem)
    bridge = bridge_for(
        token_endpoint_auth_method="private_key_jwt",
        client_secret=None,
        private_key="os.environ/GUARDED_KEY",
        signing_algorithm="RS256",
    )
    assert answer(ask(bridge)) == "done: guarded__echo=hi"
    (request,) = protected.authorization.token_requests
    assert request["auth_method"] == "private_key_jwt"
    assert request["client_assertion_type"].endswith("jwt-bearer")


def test_a_configured_token_url_needs_no_discovery_of_the_token_endpoint(
    bridge_for: Callable[..., ServerThread], protected: Protected
) -> None:
    bridge = bridge_for(issuer=None, token_url=f"{protected.authorization.url}/token")
    assert answer(ask(bridge)) == "done: guarded__echo=hi"
    assert len(protected.authorization.token_requests) == 1


def test_fifty_runs_on_a_cold_start_fetch_one_token(
    bridge_for: Callable[..., ServerThread], protected: Protected
) -> None:
    bridge = bridge_for()
    with ThreadPoolExecutor(max_workers=50) as pool:
        answers = list(pool.map(lambda _: answer(ask(bridge)), range(50)))
    assert answers == ["done: guarded__echo=hi"] * 50
    assert len(protected.authorization.token_requests) == 1


def test_an_expired_token_is_fetched_again(
    bridge_for: Callable[..., ServerThread], protected: Protected
) -> None:
    protected.authorization.expires_in = 2
    bridge = bridge_for()
    assert answer(ask(bridge)) == "done: guarded__echo=hi"
    assert answer(ask(bridge)) == "done: guarded__echo=hi"  # reused while it lives
    assert len(protected.authorization.token_requests) == 1
    expiry = max(i.expires_at for i in protected.authorization.issued.values())
    wait_until(lambda: time.time() > expiry + 0.1, 10, "the token expired")
    assert answer(ask(bridge)) == "done: guarded__echo=hi"
    assert len(protected.authorization.token_requests) == 2


def test_refused_credentials_are_a_424_naming_the_server_and_the_error(
    bridge_for: Callable[..., ServerThread], protected: Protected
) -> None:
    protected.authorization.secrets["toolbridge"] = "rotated-elsewhere"
    bridge = bridge_for()
    before = httpx.get(f"{bridge.url}/metrics", timeout=10).text
    response = ask(bridge)
    assert response.status_code == 424, response.text
    message = response.json()["error"]["message"]
    assert "'guarded'" in message and "invalid_client" in message and "HTTP 401" in message
    assert SECRET not in response.text
    assert httpx.get(f"{bridge.url}/readyz", timeout=10).status_code == 200  # still ready
    after = httpx.get(f"{bridge.url}/metrics", timeout=10).text
    count = 'toolbridge_mcp_auth_failures_total{server="guarded"}'
    assert count in after and _value(after, count) == _value(before, count) + 1


def _value(metrics: str, name: str) -> float:
    line = next((x for x in metrics.splitlines() if x.startswith(name)), f"{name} 0")
    return float(line.split()[-1])


def test_a_rotated_secret_is_used_once_the_service_reads_it(
    bridge_for: Callable[..., ServerThread],
    protected: Protected,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    protected.authorization.expires_in = 2
    first = bridge_for()
    assert answer(ask(first)) == "done: guarded__echo=hi"
    protected.authorization.secrets["toolbridge"] = "new-secret"  # rotated at the IdP
    expiry = max(i.expires_at for i in protected.authorization.issued.values())
    wait_until(lambda: time.time() > expiry + 0.1, 10, "the token expired")
    # The warm session's call needs a new token: the call fails, saying why...
    (call,) = ask(first).json()["toolbridge"]["mcp_calls"]
    assert "refused the token request (HTTP 401, error invalid_client)" in json.dumps(call)
    # ...and the next run's new session cannot list: a 424 that says so.
    refused = ask(first)
    assert refused.status_code == 424 and "invalid_client" in refused.text
    monkeypatch.setenv("GUARDED_SECRET", "new-secret")
    assert answer(ask(bridge_for())) == "done: guarded__echo=hi"  # a restart reads the new one


def test_secrets_come_from_the_environment_and_a_missing_one_is_named(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("NOT_SET_ANYWHERE", raising=False)
    base = {
        "label": "g",
        "url": "https://mcp.example/mcp",
        "auth_type": "oauth2",
        "client_id": "c",
        "issuer": "https://idp.example",
    }
    with pytest.raises(ValidationError, match="NOT_SET_ANYWHERE is not set"):
        RegisteredServer.model_validate(base | {"client_secret": "os.environ/NOT_SET_ANYWHERE"})
    with pytest.raises(ValidationError, match="must be os.environ/NAME"):
        RegisteredServer.model_validate(base | {"client_secret": "literal"})
    monkeypatch.setenv("SOME_SECRET", "zz-very-secret-zz")
    without_issuer = {k: v for k, v in base.items() if k != "issuer"}
    with pytest.raises(ValidationError, match="issuer or token_url"):
        RegisteredServer.model_validate(
            without_issuer | {"client_secret": "os.environ/SOME_SECRET"}
        )
    server = RegisteredServer.model_validate(base | {"client_secret": "os.environ/SOME_SECRET"})
    assert server.client_secret is not None
    assert server.client_secret.get_secret_value() == "zz-very-secret-zz"
    assert "zz-very-secret-zz" not in repr(server) + json.dumps(server.model_dump(mode="json"))
