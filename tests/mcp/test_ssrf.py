"""The SSRF guard for caller-supplied server URLs."""

from __future__ import annotations

import ipaddress
import socket
from typing import Any

import anyio
import pytest

from app.mcp.transport.ssrf import AddressPolicy, UnsafeServerUrl, pin_url
from app.redact import redact_url

DEFAULT = AddressPolicy()


@pytest.mark.parametrize(
    "address",
    [
        "127.0.0.1",
        "10.1.2.3",
        "172.16.0.1",
        "192.168.1.1",
        "169.254.169.254",
        "100.64.0.1",
        "0.0.0.0",
        "224.0.0.1",
        "::1",
        "fe80::1",
        "fec0::1",  # site-local (deprecated), which is_global calls global
        "fec0:0:0:1::5",
        "fd00:ec2::254",
        "fc00::1",
        "::",
        "::ffff:127.0.0.1",
        "::ffff:10.0.0.1",
        "ff02::1",
        "240.0.0.1",
        # IPv6 forms that carry an IPv4 address are judged by it:
        "::127.0.0.1",  # IPv4-compatible
        "::ffff:0:7f00:1",  # IPv4-translated (SIIT)
        "64:ff9b::7f00:1",  # NAT64 well-known prefix -> 127.0.0.1
        "64:ff9b::a9fe:a9fe",  # NAT64 -> 169.254.169.254 (cloud metadata)
        "64:ff9b::a00:1",  # NAT64 -> 10.0.0.1
        "64:ff9b:1::a00:1",  # local-use NAT64 (RFC 8215)
        "2002:7f00:1::1",  # 6to4 -> 127.0.0.1
        "2002:a9fe:a9fe::1",  # 6to4 -> 169.254.169.254
        "2001:0:4136:e378:8000:63bf:80ff:fffe",  # Teredo, client 127.0.0.1
        "2001:0:a00:1::1",  # Teredo, server 10.0.0.1
    ],
)
def test_internal_addresses_are_refused(address: str) -> None:
    assert not DEFAULT.allows_address(ipaddress.ip_address(address))


@pytest.mark.parametrize(
    "address",
    ["8.8.8.8", "1.1.1.1", "2606:4700:4700::1111", "64:ff9b::808:808", "2002:808:808::1"],
)
def test_public_addresses_are_allowed(address: str) -> None:
    assert DEFAULT.allows_address(ipaddress.ip_address(address))


def test_allowlist_opens_networks_and_hostnames() -> None:
    policy = AddressPolicy.from_entries(["10.20.0.0/16", "*.corp.example", "mcp.internal"])
    assert policy.allows_address(ipaddress.ip_address("10.20.3.4"))
    assert not policy.allows_address(ipaddress.ip_address("10.21.0.1"))
    assert policy.allows_host("a.b.corp.example") and policy.allows_host("MCP.internal.")
    assert not policy.allows_host("corp.example.evil")


@pytest.mark.parametrize(
    "address",
    ["64:ff9b::7f00:1", "2002:7f00:1::1", "2001:0:4136:e378:8000:63bf:80ff:fffe", "::7f00:1"],
)
def test_an_allowlisted_ipv4_is_not_reached_through_a_gateway(address: str) -> None:
    """NAT64, 6to4, Teredo, IPv4-compatible: packets go to a gateway, not to the IPv4 the
    address carries, so an allowlist entry for that IPv4 does not open them."""
    policy = AddressPolicy.from_entries(["127.0.0.0/8"])
    assert policy.allows_address(ipaddress.ip_address("127.0.0.1"))
    assert policy.allows_address(ipaddress.ip_address("::ffff:127.0.0.1"))  # the IPv4 itself
    assert not policy.allows_address(ipaddress.ip_address(address))
    # An entry naming the IPv6 network as written does open it.
    assert AddressPolicy.from_entries(["64:ff9b::/96"]).allows_address(
        ipaddress.ip_address("64:ff9b::7f00:1")
    )


def test_a_name_with_any_internal_answer_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    """A name answering a public and an internal address is refused, whichever comes first:
    a connection could go to either."""
    orders = [["8.8.8.8", "10.0.0.5"], ["10.0.0.5", "8.8.8.8"], ["8.8.4.4", "::1"]]
    for answers in orders:

        async def mixed(host: Any, port: Any, answers: list[str] = answers, **_: Any) -> Any:
            family = {4: socket.AF_INET, 6: socket.AF_INET6}
            return [
                (family[ipaddress.ip_address(a).version], socket.SOCK_STREAM, 6, "", (a, port))
                for a in answers
            ]

        monkeypatch.setattr(anyio, "getaddrinfo", mixed)
        with pytest.raises(UnsafeServerUrl, match="not point to a public server"):
            anyio.run(lambda: pin_url("https://mixed.example/mcp", DEFAULT, param="p"))
    # All public: allowed, pinned to the first answer.
    monkeypatch.setattr(
        anyio,
        "getaddrinfo",
        lambda host, port, **_: _answer([("8.8.8.8", port), ("8.8.4.4", port)]),
    )
    pinned = anyio.run(lambda: pin_url("https://mixed.example/mcp", DEFAULT, param="p"))
    assert pinned.address == "8.8.8.8"


async def _answer(pairs: list[tuple[str, int]]) -> Any:
    return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", pair) for pair in pairs]


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("file:///etc/passwd", "absolute http or https"),
        ("gopher://example.com/", "absolute http or https"),
        ("http:///nohost", "absolute http or https"),
        ("http://127.0.0.1:8080/mcp", "not point to a public server"),
        ("http://localhost/mcp", "not point to a public server"),
        ("http://[::ffff:169.254.169.254]/latest", "not point to a public server"),
        ("http://[64:ff9b::a9fe:a9fe]/latest", "not point to a public server"),
        ("http://169.254.169.254/latest/meta-data/", "not point to a public server"),
        ("http://no-such-host.invalid/mcp", "could not be resolved"),
        ("http://8.8.8.8:0/mcp", "invalid port"),
        ("https://8.8.8.8:99999/mcp", "invalid port"),
        ("http://user:secret@8.8.8.8/mcp", "must not contain credentials"),
        ("http://8.8.8.8\\@127.0.0.1/mcp", "characters that are not allowed"),
        ("http://8.8.8.8 /mcp", "characters that are not allowed"),
    ],
)
def test_pin_url_refuses(url: str, message: str) -> None:
    with pytest.raises(UnsafeServerUrl, match=message) as caught:
        anyio.run(lambda: pin_url(url, DEFAULT, param="tools[0].server_url"))
    assert caught.value.param == "tools[0].server_url"
    for revealing in ("127.0.0.1", "169.254", "::1", "secret"):
        assert revealing not in caught.value.message  # no address, no credential


def test_pin_url_returns_the_checked_address() -> None:
    policy = AddressPolicy.from_entries(["localhost"])
    pinned = anyio.run(lambda: pin_url("http://localhost:1234/mcp", policy, param="p"))
    assert pinned.host == "localhost" and pinned.address in ("127.0.0.1", "::1")
    assert anyio.run(lambda: pin_url("https://8.8.8.8/mcp", DEFAULT, param="p")).address == (
        "8.8.8.8"
    )


@pytest.mark.parametrize("url", ['http://8.8.8.8/"x?token=secret', "http://8.8.8.8/<x>?t=s"])
def test_a_url_the_redactor_cannot_take_apart_is_refused(url: str) -> None:
    with pytest.raises(UnsafeServerUrl, match="not allowed in a URL"):
        anyio.run(lambda: pin_url(url, DEFAULT, param="p"))


def test_redaction_fails_closed() -> None:
    assert redact_url("https://u:p@mcp.example/x?token=s&a=1") == (
        "https://REDACTED@mcp.example/x?token=REDACTED&a=REDACTED"
    )
    assert redact_url('http://8.8.8.8/"x?token=secret') == "REDACTED"  # nothing shown
