"""Keeping caller-supplied ``server_url``s from reaching into the cluster (SSRF).

A URL from a request is checked before any byte is sent to it: ``http``/``https`` only, no
credentials in it, no characters that parsers disagree on, a real port; the host is resolved
once and every address it resolves to must be public (not loopback, private, link-local, CGNAT,
multicast, unspecified or reserved) unless the operator allowlists it. An IPv6 address that
carries an IPv4 address (IPv4-mapped, -compatible and -translated, NAT64, 6to4, Teredo) is
judged by the IPv4 address it carries, since that is where a translating network delivers it.

Caller traffic then goes through a pool of its own whose resolver answers only with the
address checked for the request's host: a DNS answer that changes between check and connect
(rebinding) cannot redirect it, the pool keys connections by hostname (a connection validated
for one name never serves another on the same address), and TLS verifies the real hostname.
The ``mcp`` SDK follows redirects only within the same origin, which stays pinned; a request
for any other host is refused. Operator-registered servers are configuration, not input, and
use the ordinary pool.
"""

from __future__ import annotations

import contextvars
import ipaddress
import socket
import ssl
from collections.abc import Iterable
from dataclasses import dataclass
from urllib.parse import urlsplit

import anyio
import httpx2
from aiohttp.abc import AbstractResolver, ResolveResult

from app.errors import InvalidRequest
from app.mcp.transport.http import (
    DEFAULT_MAX_BODY_BYTES,
    AiohttpTransport,
    Incoming,
    Outgoing,
    Wire,
)

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network

_CARRY_IPV4_IN_LOW_BITS = tuple(
    ipaddress.IPv6Network(n)
    for n in (
        "64:ff9b::/96",  # NAT64 well-known prefix (RFC 6052)
        "::/96",  # IPv4-compatible (deprecated, still routed by some stacks)
        "::ffff:0:0:0/96",  # IPv4-translated (SIIT, RFC 2765)
    )
)
_NAT64_LOCAL_USE = ipaddress.IPv6Network("64:ff9b:1::/48")
"""RFC 8215: local-use NAT64, where the IPv4 address sits at a site-chosen offset: never public."""
_AMBIGUOUS_CHARACTERS = frozenset('\\ \t\r\n\x00"<>`{}|^')
"""Characters on which URL parsers disagree about where the host ends, and those a URL never
holds unencoded (RFC 3986), which the redactor would not take apart."""


class UnsafeServerUrl(InvalidRequest):
    """A request-supplied server_url that toolbridge will not connect to."""


def carried_ipv4(address: ipaddress.IPv6Address) -> tuple[ipaddress.IPv4Address, ...]:
    """The IPv4 addresses an IPv6 address carries (and a translator would deliver it to)."""
    if address.ipv4_mapped is not None:
        return (address.ipv4_mapped,)
    if any(address in network for network in _CARRY_IPV4_IN_LOW_BITS):
        return (ipaddress.IPv4Address(int(address) & 0xFFFF_FFFF),)
    if address.sixtofour is not None:
        return (address.sixtofour,)
    if address.teredo is not None:
        return address.teredo  # (server, client): both are reached
    return ()


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
        if isinstance(address, ipaddress.IPv6Address):
            if address in _NAT64_LOCAL_USE:
                return False
            if address.ipv4_mapped is not None:  # a socket connects to the IPv4 itself
                return self.allows_address(address.ipv4_mapped)
            if carried := carried_ipv4(address):
                # Through a gateway (NAT64, 6to4, Teredo): the allowlist names where packets
                # go, which is the gateway, so the IPv4 carried is used only to refuse.
                return all(_public(v4) for v4 in carried)
        return _public(address)


def _public(address: IPAddress) -> bool:
    if isinstance(address, ipaddress.IPv6Address) and address.is_site_local:
        return False  # fec0::/10: deprecated, yet routed inside some networks (is_global says yes)
    return address.is_global and not address.is_multicast


async def _resolve(host: str, port: int, param: str) -> list[IPAddress]:
    try:
        return [ipaddress.ip_address(host)]
    except ValueError:
        pass
    try:
        infos = await anyio.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (OSError, UnicodeError):
        raise UnsafeServerUrl(
            "The host of server_url could not be resolved.", param=param
        ) from None
    return list(dict.fromkeys(ipaddress.ip_address(info[4][0]) for info in infos))


@dataclass(frozen=True, slots=True)
class PinnedUrl:
    """A checked caller URL's host, and the address its connections must go to."""

    host: str
    """As httpx gives it in ``URL.host`` (IDNs decoded)."""
    wire_host: str
    """As the connection pool sees it (IDNs in punycode, no brackets)."""
    address: str


def _parse(url: str, param: str) -> tuple[httpx2.URL, int]:
    """The URL as httpx (which will connect) parses it, and its port; refused when anything
    about it is ambiguous or carries credentials."""
    if any(c in _AMBIGUOUS_CHARACTERS or ord(c) < 0x20 for c in url):
        raise UnsafeServerUrl(
            "server_url contains characters that are not allowed in a URL.", param=param
        )
    try:
        parsed = httpx2.URL(url)
        split = urlsplit(url)
        port = parsed.port
    except (httpx2.InvalidURL, ValueError):
        raise UnsafeServerUrl("server_url is not a valid URL.", param=param) from None
    if parsed.scheme not in ("http", "https") or not parsed.host:
        raise UnsafeServerUrl("server_url must be an absolute http or https URL.", param=param)
    if parsed.userinfo or split.username is not None:
        raise UnsafeServerUrl(
            "server_url must not contain credentials: send them with 'headers' or "
            "'authorization' instead.",
            param=param,
        )
    if (split.hostname or "").lower().rstrip(".") != parsed.host.lower().rstrip("."):
        raise UnsafeServerUrl("server_url is not a valid URL.", param=param)
    if port is not None and not 0 < port <= 65535:  # httpx2 parses 99999 as a port
        raise UnsafeServerUrl("server_url has an invalid port.", param=param)
    return parsed, port or (443 if parsed.scheme == "https" else 80)


async def pin_url(url: str, policy: AddressPolicy, *, param: str) -> PinnedUrl:
    """Check a caller-supplied URL; return where to connect.

    Raises:
        UnsafeServerUrl: the URL is not a plain http(s) URL, the host does not resolve, or it
            resolves to an address the policy does not allow. Messages never say what a name
            resolves to: that would map the internal network for anyone who asks.
    """
    parsed, port = _parse(url, param)
    host = parsed.host
    addresses = await _resolve(host.strip("[]"), port, param)
    if not addresses:
        raise UnsafeServerUrl("The host of server_url has no address.", param=param)
    if not policy.allows_host(host) and not all(policy.allows_address(a) for a in addresses):
        raise UnsafeServerUrl(
            "server_url does not point to a public server: loopback, private, link-local and "
            "other internal addresses are refused unless the operator allowlists them.",
            param=param,
        )
    wire_host = parsed.raw_host.decode("ascii").strip("[]")
    return PinnedUrl(host=host, wire_host=wire_host, address=str(addresses[0]))


_checked: contextvars.ContextVar[PinnedUrl | None] = contextvars.ContextVar(
    "toolbridge_checked_address", default=None
)
"""The checked address of the caller URL whose request is being sent (set per request)."""


class _CheckedResolver(AbstractResolver):
    """Resolves a hostname only to the address checked for it in this request (fails closed);
    an IP address in the URL is connected to as it is, and it is what was checked."""

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        checked = _checked.get()
        if checked is None or checked.wire_host != host.strip("[]"):
            raise OSError(f"refused: {host} was not checked for this request")
        address = ipaddress.ip_address(checked.address)
        return [
            {
                "hostname": host,
                "host": str(address),
                "port": port,
                "family": socket.AF_INET6 if address.version == 6 else socket.AF_INET,
                "proto": 0,
                "flags": socket.AI_NUMERICHOST,
            }
        ]

    async def close(self) -> None:
        """Nothing to close."""


def caller_pool(
    *, verify: ssl.SSLContext, limits: httpx2.Limits, max_body_bytes: int = DEFAULT_MAX_BODY_BYTES
) -> AiohttpTransport:
    """The pool for caller-supplied servers: every connection goes to a checked address."""
    return AiohttpTransport(
        verify=verify, limits=limits, resolver=_CheckedResolver(), max_body_bytes=max_body_bytes
    )


class PinnedTransport:
    """Sends a caller URL's requests through the caller pool, to the address it was checked at
    (a ``Wire``)."""

    def __init__(
        self,
        pool: Wire,
        pinned: PinnedUrl,
        slots: anyio.Semaphore | None = None,
    ) -> None:
        self._pool = pool
        self._pinned = pinned
        self._slots = slots
        """The caller key's request slots (``app/limits.py``): one is held per request until
        its body is closed; a GET (a session's one stream) takes none."""

    async def send(self, request: Outgoing) -> Incoming:
        if request.host != self._pinned.host:
            # Only same-origin redirects are followed by the SDK; anything else is refused here.
            raise httpx2.ConnectError(f"refused: not the checked host {self._pinned.host}")
        slots = self._slots if request.method != "GET" else None
        if slots is not None:
            await slots.acquire()
        token = _checked.set(self._pinned)
        try:
            incoming = await self._pool.send(request)
        except BaseException:
            if slots is not None:
                slots.release()
            raise
        finally:
            _checked.reset(token)
        if slots is not None:
            incoming.on_close(slots.release)
        return incoming
