"""Who the client is, behind the proxies the clinic trusts.

Behind an ingress or a load balancer every request comes from the proxy's address; the client's
is in ``X-Forwarded-For``, which anyone can also send. So the header is believed only as far as
trusted proxies wrote it: read from the right (each proxy appends the address it received the
request from), skip the trusted proxies' own addresses, and the first address left is the client.
With no trusted proxies the peer is the client and the header is ignored.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable, Sequence

from iopcare.networks import Network


def _address(text: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    text = text.strip()
    if text.startswith("[") and "]" in text:  # [v6]:port
        text = text[1 : text.index("]")]
    elif text.count(":") == 1:  # v4:port
        text = text.split(":", 1)[0]
    try:
        address = ipaddress.ip_address(text)
    except ValueError:
        return None
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped
    return address


def client_address(peer: str | None, forwarded_for: Iterable[str], trusted: Sequence[Network]) -> str:
    """The client's address: the peer's, or, when the peer is a trusted proxy, the rightmost address
    of ``X-Forwarded-For`` (all its headers, in order) that is not a trusted proxy. A malformed entry
    ends the walk at the last trusted hop: nothing left of it can be believed."""
    current = _address(peer or "")
    if current is None:
        return peer or "unknown"
    hops = [hop for header in forwarded_for for hop in header.split(",")]
    while any(current in network for network in trusted) and hops:
        previous = _address(hops.pop())
        if previous is None:
            break
        current = previous
    return str(current)


__all__ = ["client_address"]
