"""labeler.outbound: which addresses count as public, and a transport that connects only to those, over real sockets."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import httpx
import pytest

from labeler.outbound import RefusedAddress, is_public_address, public_transport


@pytest.mark.parametrize(
    ("address", "public"),
    [
        ("8.8.8.8", True),
        ("2606:4700:4700::1111", True),
        ("::ffff:8.8.8.8", True),  # IPv4-mapped public
        ("64:ff9b::808:808", True),  # NAT64 of 8.8.8.8
        ("2002:808:808::1", True),  # 6to4 of 8.8.8.8
        ("127.0.0.1", False),
        ("10.1.2.3", False),
        ("172.16.0.1", False),
        ("192.168.1.1", False),
        ("169.254.169.254", False),  # cloud metadata
        ("100.64.0.1", False),  # carrier-grade NAT
        ("0.0.0.0", False),
        ("240.0.0.1", False),  # reserved
        ("255.255.255.255", False),
        ("224.0.0.1", False),  # multicast
        ("192.0.0.1", False),  # IETF protocol assignments
        ("192.0.0.9", False),  # ... which is_global calls global
        ("192.0.0.10", False),
        ("::", False),
        ("::1", False),
        ("fe80::1", False),
        ("fc00::1", False),
        ("fec0::1", False),  # deprecated site-local, which is_global calls global
        ("ff02::1", False),  # multicast
        ("2001:db8::1", False),  # documentation
        ("2001::1", False),  # Teredo
        ("::ffff:127.0.0.1", False),  # IPv4-mapped loopback
        ("::127.0.0.1", False),  # IPv4-compatible loopback
        ("::ffff:0:7f00:1", False),  # SIIT-translated loopback
        ("::ffff:0:a9fe:a9fe", False),  # SIIT-translated metadata
        ("64:ff9b::7f00:1", False),  # NAT64 of loopback
        ("64:ff9b::a9fe:a9fe", False),  # NAT64 of the metadata address
        ("64:ff9b::a01:203", False),  # NAT64 of 10.1.2.3
        ("64:ff9b:1::a9fe:a9fe", False),  # local-use NAT64 (RFC 8215)
        ("64:ff9b:1::808:808", False),  # ... local use whatever it embeds
        ("2002:7f00:1::", False),  # 6to4 of loopback
        ("2002:a9fe:a9fe::1", False),  # 6to4 of the metadata address
        ("2002:c0a8:101::1", False),  # 6to4 of 192.168.1.1
    ],
)
def test_public_address_check(address: str, public: bool) -> None:
    assert is_public_address(address) is public


class Listener:
    """A TCP server on loopback that answers any request with 200 and counts the connections it accepted."""

    def __init__(self) -> None:
        self.accepted = 0
        self.port = 0

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.accepted += 1
        await reader.readuntil(b"\r\n\r\n")
        writer.write(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\nconnection: close\r\n\r\nok")
        await writer.drain()
        writer.close()


@pytest.fixture
async def listener() -> AsyncIterator[Listener]:
    listening = Listener()
    server = await asyncio.start_server(listening.handle, "127.0.0.1", 0)
    listening.port = server.sockets[0].getsockname()[1]
    async with server:
        yield listening


@pytest.mark.parametrize("host", ["127.0.0.1", "localhost", "0x7f000001", "0x7f.1", "[::ffff:127.0.0.1]"])
async def test_the_public_transport_never_connects_to_loopback(listener: Listener, host: str) -> None:
    """Each spelling of loopback is refused after resolving, before any connection reaches the listener."""
    async with httpx.AsyncClient(transport=public_transport()) as client:
        with pytest.raises(RefusedAddress, match=r"non-public (::ffff:)?127\.0\.0\.1"):
            await client.get(f"http://{host}:{listener.port}/")
    assert listener.accepted == 0


async def test_with_allow_private_the_same_request_connects(listener: Listener) -> None:
    async with httpx.AsyncClient(transport=public_transport(allow_private=True)) as client:
        response = await client.get(f"http://0x7f000001:{listener.port}/")
    assert response.text == "ok" and listener.accepted == 1


async def test_an_unresolvable_name_is_a_connect_error_worth_retrying() -> None:
    async with httpx.AsyncClient(transport=public_transport()) as client:
        with pytest.raises(httpx.ConnectError, match="cannot resolve"):
            await client.get("http://no-such-host.invalid/")
