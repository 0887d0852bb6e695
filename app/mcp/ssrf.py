"""Keeping caller-supplied ``server_url``s from reaching into the cluster (SSRF).

A URL from a request is checked before any byte is sent to it: ``http``/``https`` only; the
host is resolved once and every address it resolves to must be public (not loopback, private,
link-local, CGNAT, multicast, unspecified or reserved, in IPv4, IPv6 or IPv4-mapped form) unless
the operator allowlists it. The connection is then pinned to the checked address, so a DNS
answer that changes between check and connect (rebinding) cannot redirect it; the ``mcp`` SDK
itself follows redirects only within the same origin, which stays pinned. Operator-registered
servers are configuration, not input, and are not checked.
"""

from __future__ import annotations

import ipaddress
import socket
from collections.abc import Iterable
from dataclasses import dataclass
from urllib.parse import urlsplit

import anyio
import httpx2

from app.errors import InvalidRequest

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network


class UnsafeServerUrl(InvalidRequest):
    """A request-supplied server_url that toolbridge will not connect to."""


@dataclass(frozen=True, slots=True)
class AddressPolicy:
    """What a caller-supplied URL may reach beyond the public internet."""

    networks: tuple[IPNetwork, ...] = ()
    hostnames: tuple[str, ...] = ()
    """Exact names, or ``*.example.com`` for any subdomain."""

    @classmethod
    def from_entries(cls, entries: Iterable[str]) -> AddressPolicy:
        """Parse an operator allowlist: CIDRs (or single addresses) and hostnames."""
        networks, hostnames = [], []
        for entry in entries:
            try:
                networks.append(ipaddress.ip_network(entry.strip(), strict=False))
            except ValueError:
                hostnames.append(entry.strip().lower().rstrip("."))
        return cls(tuple(networks), tuple(hostnames))

    def allows_host(self, host: str) -> bool:
        host = host.lower().rstrip(".")
        return any(
            host == name or (name.startswith("*.") and host.endswith(name[1:]))
            for name in self.hostnames
        )

    def allows_address(self, address: IPAddress) -> bool:
        if any(address in network for network in self.networks):
            return True
        mapped = getattr(address, "ipv4_mapped", None)
        if mapped is not None:
            return self.allows_address(mapped)
        return address.is_global and not address.is_multicast


async def _resolve(host: str, port: int) -> list[IPAddress]:
    try:
        return [ipaddress.ip_address(host)]
    except ValueError:
        pass
    try:
        infos = await anyio.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except OSError:
        raise UnsafeServerUrl(
            f"The host '{host}' of server_url could not be resolved.", param="server_url"
        ) from None
    return list(dict.fromkeys(ipaddress.ip_address(info[4][0]) for info in infos))


async def pin_url(url: str, policy: AddressPolicy, *, param: str) -> str:
    """Check a caller-supplied URL; return the address to connect to.

    Raises:
        UnsafeServerUrl: the scheme is not http(s), the host does not resolve, or it resolves
            to an address the policy does not allow.
    """
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise UnsafeServerUrl("server_url must be an absolute http or https URL.", param=param)
    try:
        port = parts.port or (443 if parts.scheme == "https" else 80)
    except ValueError:
        raise UnsafeServerUrl("server_url has an invalid port.", param=param) from None
    addresses = await _resolve(parts.hostname, port)
    if not addresses:
        raise UnsafeServerUrl(
            f"The host '{parts.hostname}' of server_url has no address.", param=param
        )
    if policy.allows_host(parts.hostname):
        return str(addresses[0])
    refused = [a for a in addresses if not policy.allows_address(a)]
    if refused:
        raise UnsafeServerUrl(
            f"server_url resolves to an address toolbridge does not connect to ({refused[0]}): "
            "loopback, private, link-local and other internal ranges are refused unless the "
            "operator allowlists them.",
            param=param,
        )
    return str(addresses[0])


class PinnedTransport(httpx2.AsyncBaseTransport):
    """Sends every request for ``host`` to the address it was checked at."""

    def __init__(self, inner: httpx2.AsyncBaseTransport, host: str, address: str) -> None:
        self._inner = inner
        self._host = host
        self._address = address

    async def handle_async_request(self, request: httpx2.Request) -> httpx2.Response:
        if request.url.host != self._host:
            # Only same-origin redirects are followed by the SDK; anything else is refused here.
            raise httpx2.ConnectError(f"refused: not the checked host {self._host}")
        if request.url.scheme == "https":
            request.extensions = {**request.extensions, "sni_hostname": self._host}
        request.url = request.url.copy_with(host=self._address)  # Host header keeps the name
        return await self._inner.handle_async_request(request)

    async def aclose(self) -> None:
        await self._inner.aclose()
