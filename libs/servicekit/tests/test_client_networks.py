"""Per-client limits count a client network: an IPv4 address, an IPv6 /64, an IPv4-mapped IPv6 address as
the IPv4 address it maps; the same client gives the same key whatever its spelling, through a proxy too."""

from __future__ import annotations

import httpx
import pytest
from fastapi import FastAPI, Request

from servicekit.errors import RateLimitedError
from servicekit.ratelimit import RateLimiter, client_key, client_network, parse_networks
from servicekit.settings import ClientNetworkSettings


@pytest.mark.parametrize(
    ("address", "network"),
    [
        ("203.0.113.5", "203.0.113.5"),
        ("::ffff:203.0.113.5", "203.0.113.5"),
        ("::FFFF:CB00:7105", "203.0.113.5"),
        ("0:0:0:0:0:ffff:cb00:7105", "203.0.113.5"),
        ("2001:db8:1:2::1", "2001:db8:1:2::/64"),
        ("2001:DB8:1:2:FFFF:FFFF:FFFF:FFFF", "2001:db8:1:2::/64"),
        ("2001:0db8:0001:0002:0000:0000:0000:0001", "2001:db8:1:2::/64"),
        ("2001:db8:1:3::1", "2001:db8:1:3::/64"),
        ("testclient", "testclient"),
        ("x" * 100, "x" * 45),
    ],
)
def test_a_client_is_its_ipv4_address_or_its_ipv6_64(address: str, network: str) -> None:
    assert client_network(address) == network


def test_the_prefixes_are_settings() -> None:
    assert client_network("198.51.100.77", ipv4_prefix=24) == "198.51.100.0/24"
    assert client_network("::ffff:198.51.100.77", ipv4_prefix=24) == "198.51.100.0/24"
    assert client_network("2001:db8:7:1::1", ipv6_prefix=48) == "2001:db8:7::/48"
    assert client_network("2001:db8:7:1::1", ipv6_prefix=128) == "2001:db8:7:1::1"
    with pytest.raises(ValueError, match="client_ipv6_prefix"):
        ClientNetworkSettings(client_ipv6_prefix=8)


TRUSTED_PROXIES = parse_networks(["10.0.0.0/8"])
app = FastAPI()


@app.get("/whoami")
async def whoami(request: Request) -> str:
    return client_key(request, trusted_proxies=TRUSTED_PROXIES, settings=ClientNetworkSettings())


async def _client_key_of(peer: str, forwarded: str | None) -> str:
    """The key ``client_key`` gives a request from ``peer`` (behind the trusted proxies 10.0.0.0/8)."""
    transport = httpx.ASGITransport(app=app, client=(peer, 40000))
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as client:
        headers = {"X-Forwarded-For": forwarded} if forwarded else {}
        answer: str = (await client.get("/whoami", headers=headers)).json()
        return answer


@pytest.mark.parametrize(
    ("peer", "forwarded", "key"),
    [
        ("2001:db8:1:2::10", None, "2001:db8:1:2::/64"),
        ("2001:db8:1:2::10", "198.51.100.1", "2001:db8:1:2::/64"),  # an untrusted peer's header is ignored
        ("10.0.0.2", "2001:db8:5:6::abcd", "2001:db8:5:6::/64"),
        ("10.0.0.2", "2001:db8:9::1, ::ffff:198.51.100.1, 10.0.0.3", "198.51.100.1"),
    ],
)
async def test_the_key_of_a_request_is_its_clients_network(
    peer: str, forwarded: str | None, key: str
) -> None:
    assert await _client_key_of(peer, forwarded) == key


async def test_addresses_of_one_64_share_one_rate_limit() -> None:
    limiter = RateLimiter(redis=None, namespace="test")
    for n in range(3):
        await limiter.hit(
            name="orders",
            identifier=client_network(f"2001:db8:1:2::{n + 1:x}"),
            limit="3/minute",
            fail_open=True,
        )
    with pytest.raises(RateLimitedError):
        await limiter.hit(
            name="orders", identifier=client_network("2001:db8:1:2:ffff::9"), limit="3/minute", fail_open=True
        )
    await limiter.hit(
        name="orders", identifier=client_network("2001:db8:1:3::1"), limit="3/minute", fail_open=True
    )
