"""Who a request comes from, for per-client limits (subscriptions per client, failed admin passwords).

The client address is the ASGI scope's: the peer, or what a trusted reverse proxy says in `X-Forwarded-For`
(uvicorn applies it only for proxies in `LABELER_FORWARDED_ALLOW_IPS`). An IPv6 client is limited by its /64:
one home or server line is routinely given a whole /64, so a limit per IPv6 address would limit nothing.
"""

from __future__ import annotations

import ipaddress
from typing import Final

from starlette.requests import HTTPConnection

IPV6_PREFIX: Final = 64


def client_key(connection: HTTPConnection) -> str:
    """An IPv4 address, an IPv6 /64 (`2001:db8:1:2::/64`), or the peer's name when it is not an IP address."""
    client = connection.client
    if client is None:
        return "unknown"
    return address_key(client.host)


def address_key(host: str) -> str:
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return host
    if isinstance(address, ipaddress.IPv6Address):
        if address.ipv4_mapped is not None:
            return str(address.ipv4_mapped)
        return str(ipaddress.IPv6Network((address, IPV6_PREFIX), strict=False))
    return str(address)
