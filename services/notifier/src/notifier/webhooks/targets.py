"""Where a webhook may go (SSRF): a URL whose host resolves to an address that is not on the public internet
(loopback, private, link-local, CGNAT, multicast, unspecified, reserved, the cloud metadata services) is
refused, at registration and again at each delivery, which then connects to the address it checked, so a DNS
answer changed in between cannot send it elsewhere. Development settings allow plain HTTP and private targets
(a receiver on the laptop); production refuses to start with them."""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from dataclasses import dataclass
from urllib.parse import SplitResult, urlsplit

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

METADATA_ADDRESSES = frozenset(
    ipaddress.ip_address(a) for a in ("169.254.169.254", "fd00:ec2::254", "100.100.100.200", "169.254.170.2")
)
"""Cloud metadata services (AWS, AWS IPv6, Alibaba, ECS task metadata): refused even when private targets
are allowed."""


class TargetRefused(ValueError):
    """The URL may not receive webhooks; the message says why."""


@dataclass(frozen=True, slots=True)
class Target:
    """A URL checked for delivery: connect to ``address``, name ``url``'s host in ``Host`` and TLS."""

    url: SplitResult
    address: IPAddress

    @property
    def host(self) -> str:
        return self.url.hostname or ""

    @property
    def connect_url(self) -> str:
        """The URL with the checked address in place of the host name."""
        host = f"[{self.address}]" if self.address.version == 6 else str(self.address)
        netloc = f"{host}:{self.url.port}" if self.url.port else host
        return self.url._replace(netloc=netloc).geturl()

    @property
    def host_header(self) -> str:
        return self.url.netloc.rpartition("@")[2]


def parsed_url(url: str, *, allow_http: bool) -> SplitResult:
    """``url`` if its form may receive webhooks (https, or http when allowed; a host; no credentials)."""
    parts = urlsplit(url)
    schemes = ("https", "http") if allow_http else ("https",)
    if parts.scheme not in schemes:
        raise TargetRefused("must be an https:// URL" if not allow_http else "must be an http(s):// URL")
    if not parts.hostname:
        raise TargetRefused("has no host")
    if parts.username or parts.password:
        raise TargetRefused("must not carry credentials")
    try:
        parts.port  # noqa: B018 (raises on a port out of range)
    except ValueError as exc:
        raise TargetRefused(f"has an invalid port: {exc}") from exc
    return parts


NAT64_NETWORKS = (ipaddress.IPv6Network("64:ff9b::/96"), ipaddress.IPv6Network("64:ff9b:1::/48"))
"""IPv6 prefixes that carry an IPv4 address in their last 32 bits to a NAT64 gateway (RFC 6052, RFC 8215)."""
ALWAYS_REFUSED_NETWORKS = (ipaddress.IPv6Network("fec0::/10"), ipaddress.IPv4Network("192.0.0.0/24"))
"""Site-local IPv6 (deprecated, still routed inside some networks) and the IETF protocol block (Oracle
Cloud's metadata service is 192.0.0.192): Python counts neither as private."""


def embedded_ipv4(address: ipaddress.IPv6Address) -> ipaddress.IPv4Address | None:
    """The IPv4 address an IPv6 address stands for: mapped (``::ffff:a.b.c.d``), IPv4-compatible
    (``::a.b.c.d``), 6to4, Teredo's client or NAT64; such an address reaches that IPv4 host."""
    if address.ipv4_mapped is not None:
        return address.ipv4_mapped
    if address.sixtofour is not None:
        return address.sixtofour
    if address.teredo is not None:
        return address.teredo[1]
    last_32_bits = ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)
    if any(address in network for network in NAT64_NETWORKS):
        return last_32_bits
    if int(address) >> 32 == 0 and int(address) > 1:  # ::a.b.c.d (not :: or ::1, judged as themselves)
        return last_32_bits
    return None


def address_refusal(address: IPAddress, *, allow_private: bool) -> str | None:
    """Why webhooks may not go to ``address``; ``None`` when they may. An IPv6 address that carries an IPv4
    address is judged by that IPv4 address too."""
    if isinstance(address, ipaddress.IPv6Address):
        carried = embedded_ipv4(address)
        if carried is not None:
            reason = address_refusal(carried, allow_private=allow_private)
            if reason is not None:
                return f"{address} carries {reason}"
    if any(address in network for network in ALWAYS_REFUSED_NETWORKS if network.version == address.version):
        return f"{address} is a reserved address"
    if address in METADATA_ADDRESSES:
        return f"{address} is a cloud metadata address"
    if address.is_multicast or address.is_unspecified:
        return f"{address} is not a unicast address"
    if not address.is_global and not allow_private:
        return f"{address} is not a public address (loopback, private, link-local, CGNAT or reserved)"
    return None


async def resolve(host: str, port: int) -> list[IPAddress]:
    try:
        infos = await asyncio.get_running_loop().getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except socket.gaierror as exc:
        raise TargetRefused(f"its host {host} does not resolve: {exc.strerror}") from exc
    except UnicodeError as exc:  # a name IDNA cannot encode (an empty or over-long label)
        raise TargetRefused(f"has an invalid host: {exc}") from exc
    return list(dict.fromkeys(ipaddress.ip_address(info[4][0]) for info in infos))


async def checked_target(url: str, *, allow_http: bool, allow_private: bool) -> Target:
    """The address to deliver ``url`` to: every address its host resolves to must be allowed (a name with
    one private address among public ones is refused), and the first is used."""
    parts = parsed_url(url, allow_http=allow_http)
    host = parts.hostname or ""
    port = parts.port or (443 if parts.scheme == "https" else 80)
    addresses = await resolve(host, port)
    for address in addresses:
        reason = address_refusal(address, allow_private=allow_private)
        if reason is not None:
            raise TargetRefused(f"resolves to a refused address: {reason}")
    if not addresses:  # pragma: no cover (getaddrinfo answers at least one or raises)
        raise TargetRefused(f"its host {host} does not resolve")
    return Target(url=parts, address=addresses[0])
