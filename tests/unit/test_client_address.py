"""Who the client is behind trusted proxies (iopcare.api.client_address)."""

from __future__ import annotations

import pytest

from iopcare.api.client_address import client_address
from iopcare.networks import parse_networks

PROXIES = parse_networks("10.0.0.0/8, 192.0.2.1, fd00::/8")


def test_without_trusted_proxies_the_peer_is_the_client_whatever_the_header_says() -> None:
    assert client_address("203.0.113.5", ["198.51.100.1"], ()) == "203.0.113.5"
    assert client_address("203.0.113.5", ["198.51.100.1"], PROXIES) == "203.0.113.5"  # peer not a proxy


def test_behind_proxies_the_rightmost_untrusted_hop_is_the_client() -> None:
    # The client may send its own X-Forwarded-For: everything left of what the proxies wrote is hers.
    assert client_address("10.1.2.3", ["6.6.6.6, 203.0.113.5, 192.0.2.1"], PROXIES) == "203.0.113.5"
    assert client_address("10.1.2.3", ["6.6.6.6", "203.0.113.5"], PROXIES) == "203.0.113.5"  # two headers
    assert client_address("fd00::1", ["2001:db8::7"], PROXIES) == "2001:db8::7"
    assert client_address("::ffff:10.0.0.1", ["203.0.113.5:4711"], PROXIES) == "203.0.113.5"
    assert client_address("10.0.0.1", ["[2001:db8::7]:443"], PROXIES) == "2001:db8::7"


def test_only_proxies_or_a_malformed_hop_leave_the_last_trusted_address() -> None:
    assert client_address("10.0.0.1", [], PROXIES) == "10.0.0.1"
    assert client_address("10.0.0.1", ["10.0.0.2"], PROXIES) == "10.0.0.2"
    assert client_address("10.0.0.1", ["203.0.113.5, unknown"], PROXIES) == "10.0.0.1"
    assert client_address(None, [], PROXIES) == "unknown"


@pytest.mark.parametrize("bad", ["10.0.0.0/33", "proxy.internal", "10.0.0.1/8/2"])
def test_a_setting_that_is_not_a_network_is_refused(bad: str) -> None:
    with pytest.raises(ValueError, match="not an IP address or CIDR range"):
        parse_networks(f"10.0.0.1, {bad}")
