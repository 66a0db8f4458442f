"""IP networks named in the settings (trusted proxies, webhook targets allowed on a private network)."""

from __future__ import annotations

import ipaddress

Network = ipaddress.IPv4Network | ipaddress.IPv6Network


def parse_networks(text: str) -> tuple[Network, ...]:
    """Comma-separated addresses or CIDR ranges (``10.0.0.0/8, 192.168.1.7, fd00::/8``)."""
    networks = []
    for part in text.split(","):
        part = part.strip()
        if not part:
            continue
        try:
            networks.append(ipaddress.ip_network(part, strict=False))
        except ValueError:
            raise ValueError(f"{part!r} is not an IP address or CIDR range") from None
    return tuple(networks)


__all__ = ["Network", "parse_networks"]
