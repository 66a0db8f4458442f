"""Where a webhook may be sent: public addresses only, unless a setting allows a network.

A webhook target is a URL someone registered, so it must not become a way into the clinic's own
network (server-side request forgery): a receiver on 10.x, the cloud's metadata service at
169.254.169.254, the database on loopback. Every address the target's host resolves to must be
public (``ipaddress``'s ``is_global``, and neither multicast nor unspecified), or inside
``IOPCARE_WEBHOOK_ALLOWED_NETWORKS``; a cloud metadata address never is. The check runs when an
endpoint is registered and again at every connection (:class:`GuardedResolver`, the dispatcher's
resolver), so a name that later resolves elsewhere (DNS rebinding) is refused too. Hosts are
whatever the resolver makes of them, so ``http://2852039166/`` (169.254.169.254 written as one
number) is caught as what it resolves to.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from collections.abc import Sequence
from urllib.parse import urlsplit

from aiohttp.abc import AbstractResolver, ResolveResult
from aiohttp.resolver import DefaultResolver

from iopcare.networks import Network

Address = ipaddress.IPv4Address | ipaddress.IPv6Address

METADATA_NETWORKS: tuple[Network, ...] = tuple(
    ipaddress.ip_network(n)
    for n in (
        "169.254.169.254/32",  # AWS, GCP, Azure, OpenStack, DigitalOcean
        "169.254.170.2/32",  # AWS ECS task metadata
        "100.100.100.200/32",  # Alibaba Cloud
        "fd00:ec2::254/128",  # AWS over IPv6
    )
)


class TargetRefused(OSError):
    """A webhook target resolves to an address it may not be sent to; the message says which kind."""


def _kind(address: Address) -> str:
    for kind in ("unspecified", "loopback", "link_local", "multicast", "private", "reserved"):
        if getattr(address, f"is_{kind}"):
            return kind.replace("_", "-")
    return "not public"


def refusal(address: Address, allowed: Sequence[Network]) -> str | None:
    """Why ``address`` may not receive a webhook, or None if it may."""
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    if any(address in network for network in METADATA_NETWORKS):
        return f"{address} is a cloud metadata address"
    if any(address in network for network in allowed):
        return None
    kind = _kind(address)
    if address.is_global and kind == "not public":  # is_global alone lets multicast through
        return None
    return f"{address} is a {kind} address (IOPCARE_WEBHOOK_ALLOWED_NETWORKS can allow it)"


def check_addresses(host: str, addresses: Sequence[str], allowed: Sequence[Network]) -> None:
    """Raise :class:`TargetRefused` unless every address ``host`` resolved to may receive webhooks."""
    if not addresses:
        raise TargetRefused(f"{host} resolves to no address")
    for text in addresses:
        reason = refusal(ipaddress.ip_address(text.split("%", 1)[0]), allowed)
        if reason is not None:
            raise TargetRefused(f"{host}: {reason}")


async def check_target(url: str, allowed: Sequence[Network]) -> bool:
    """Resolve the URL's host as the dispatcher would and check every address (at registration):
    raises :class:`TargetRefused` for a refused address; False when the name does not resolve now
    (it is checked again at every connection)."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    try:
        port = parts.port or (443 if parts.scheme == "https" else 80)
        infos = await asyncio.get_running_loop().getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (OSError, ValueError):
        return False
    check_addresses(host, [str(info[4][0]) for info in infos], allowed)
    return True


def check_literal(url: str, allowed: Sequence[Network]) -> None:
    """Check a URL whose host is an IP address: aiohttp connects to those without its resolver."""
    host = urlsplit(url).hostname or ""
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return  # a name: the resolver checks it
    check_addresses(host, [host], allowed)


class GuardedResolver(AbstractResolver):
    """aiohttp's resolver, refusing names that resolve to an address webhooks may not reach."""

    def __init__(self, allowed: Sequence[Network], inner: AbstractResolver | None = None) -> None:
        self._allowed = tuple(allowed)
        self._inner = inner if inner is not None else DefaultResolver()

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        results = await self._inner.resolve(host, port, family)
        check_addresses(host, [r["host"] for r in results], self._allowed)
        return results

    async def close(self) -> None:
        await self._inner.close()


__all__ = ["GuardedResolver", "TargetRefused", "check_addresses", "check_literal", "check_target", "refusal"]
