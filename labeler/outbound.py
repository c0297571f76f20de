"""Outbound HTTP to hosts that strangers name: only to public addresses, checked after resolving the name.

Blob fetches go to whatever PDS a DID document declares, and did:web documents are fetched from whatever host the
DID names (a service token's `iss`, an image's author). Either can name a host that resolves to our own loopback,
the cloud metadata address or the private network. `public_transport()` is httpx's transport with one change, in
the network layer under its connection pool: before each new connection it resolves the host name, refuses it
(`RefusedAddress`) unless every address is public, and connects to one of the checked addresses itself. A DNS
answer that changes between the check and the connect (rebinding) therefore cannot steer us inward, and since the
pool and TLS still see the host *name*, certificates are verified for it and a kept-alive connection is reused
only for the same name. Redirects are followed by the caller, each hop through the same transport.

`is_public_address` is the standard library's `is_global` (IANA's special-purpose registries), plus what it does
not cover: every form that embeds an IPv4 address in an IPv6 one (mapped, compatible, SIIT-translated, NAT64,
6to4) is judged by the IPv4 address inside, and the deprecated site-local fec0::/10, the local-use NAT64
64:ff9b:1::/48, 192.0.0.0/24 and multicast are never public.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from collections.abc import Iterable
from typing import Final

import httpcore
import httpx

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

_NEVER_PUBLIC: Final = tuple(
    ipaddress.ip_network(net)
    for net in (
        "192.0.0.0/24",  # IETF protocol assignments; is_global lets .9 and .10 through
        "fec0::/10",  # deprecated site-local
        "64:ff9b:1::/48",  # local-use IPv4/IPv6 translation (RFC 8215)
    )
)
# IPv6 ranges whose low 32 bits are an IPv4 address: IPv4-compatible (deprecated), SIIT (RFC 2765), NAT64 (RFC 6052).
_LOW_32_EMBEDS_IPV4: Final = tuple(ipaddress.ip_network(net) for net in ("::/96", "::ffff:0:0:0/96", "64:ff9b::/96"))


class RefusedAddress(Exception):
    """The host is not public (or resolves to an address that is not); nothing was sent to it."""


def is_ip_literal(host: str) -> bool:
    """Whether `host` (a URL's host name) is an IP address rather than a name: PDSes refuse to proxy to one."""
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


def is_public_address(address: str | IPAddress) -> bool:
    """True if a connection to `address` reaches the public internet, never us or our private network."""
    ip = ipaddress.ip_address(address) if isinstance(address, str) else address
    if not ip.is_global or ip.is_multicast or any(ip in net for net in _NEVER_PUBLIC if ip.version == net.version):
        return False
    return all(is_public_address(inner) for inner in _embedded_ipv4(ip))


def _embedded_ipv4(ip: IPAddress) -> list[ipaddress.IPv4Address]:
    if not isinstance(ip, ipaddress.IPv6Address):
        return []
    inner = [a for a in (ip.ipv4_mapped, ip.sixtofour) if a is not None]
    if any(ip in net for net in _LOW_32_EMBEDS_IPV4):
        inner.append(ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF))
    return inner


async def public_addresses(host: str, port: int) -> list[str]:
    """Every address `host` resolves to, in the resolver's order; `RefusedAddress` unless all are public.
    An unresolvable name raises `httpcore.ConnectError` (httpx: `ConnectError`), a failure worth retrying."""
    try:
        infos = await asyncio.get_running_loop().getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (socket.gaierror, UnicodeError) as exc:
        raise httpcore.ConnectError(f"cannot resolve {host}: {exc}") from exc
    addresses = list(dict.fromkeys(str(info[4][0]) for info in infos))
    refused = [a for a in addresses if not is_public_address(a)]
    if refused or not addresses:
        raise RefusedAddress(f"{host} resolves to non-public {', '.join(refused) or 'nothing'}")
    return addresses


class _PublicNetworkBackend(httpcore.AsyncNetworkBackend):
    """httpcore's default network backend, connecting only to checked public addresses of the host."""

    def __init__(self) -> None:
        self._inner = httpcore.AnyIOBackend()

    async def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,  # noqa: ASYNC109 - httpcore's interface
        local_address: str | None = None,
        socket_options: Iterable[httpcore.SOCKET_OPTION] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        async with asyncio.timeout(timeout):
            addresses = await public_addresses(host, port)
        failure: httpcore.ConnectError | None = None
        for address in addresses:
            try:
                return await self._inner.connect_tcp(address, port, timeout, local_address, socket_options)
            except httpcore.ConnectError as exc:
                failure = exc
        assert failure is not None
        raise failure

    async def connect_unix_socket(
        self,
        path: str,
        timeout: float | None = None,  # noqa: ASYNC109 - httpcore's interface
        socket_options: Iterable[httpcore.SOCKET_OPTION] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        raise RefusedAddress("unix sockets are not public addresses")

    async def sleep(self, seconds: float) -> None:
        await self._inner.sleep(seconds)


class _PublicTransport(httpx.AsyncHTTPTransport):
    def __init__(self, limits: httpx.Limits) -> None:
        super().__init__(trust_env=False, limits=limits)
        # httpx builds its pool with httpcore's default network backend and offers no argument for another, so the
        # pool is built again with ours (the same settings httpx passes; httpx is pinned <0.29 in pyproject).
        self._pool = httpcore.AsyncConnectionPool(
            ssl_context=httpx.create_ssl_context(trust_env=False),
            max_connections=limits.max_connections,
            max_keepalive_connections=limits.max_keepalive_connections,
            keepalive_expiry=limits.keepalive_expiry,
            network_backend=_PublicNetworkBackend(),
        )


def public_transport(*, allow_private: bool = False, limits: httpx.Limits | None = None) -> httpx.AsyncHTTPTransport:
    """httpx's transport, refusing non-public addresses (`RefusedAddress`) unless `allow_private` (tests, private
    networks: `LABELER_ALLOW_PRIVATE_FETCH`)."""
    limits = limits or httpx.Limits(max_connections=100, max_keepalive_connections=20)
    if allow_private:
        return httpx.AsyncHTTPTransport(trust_env=False, limits=limits)
    return _PublicTransport(limits)
