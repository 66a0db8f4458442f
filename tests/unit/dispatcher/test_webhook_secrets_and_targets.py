"""Webhook secrets at rest (Fernet under rotating keys) and the addresses a webhook may go to."""

from __future__ import annotations

import ipaddress
import socket
from pathlib import Path

import pytest
from aiohttp.abc import AbstractResolver, ResolveResult

from iopcare.dispatcher.webhooks.secrets import SecretBox, SecretKeyError, is_sealed, new_key, secret_box
from iopcare.dispatcher.webhooks.targets import GuardedResolver, TargetRefused, check_literal, refusal
from iopcare.networks import parse_networks
from iopcare.settings import Settings

SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"


def test_a_sealed_secret_holds_no_plaintext_and_opens_with_the_key() -> None:
    box = SecretBox([new_key()])
    sealed = box.seal(SECRET)
    assert is_sealed(sealed) and SECRET not in sealed and "MfKQ9r8" not in sealed
    assert box.open(sealed) == SECRET
    assert box.seal(SECRET) != sealed  # a fresh IV each time


def test_keys_rotate_newest_first_and_a_dropped_key_is_named_as_the_cause() -> None:
    old_key, new = new_key(), new_key()
    sealed_under_old = SecretBox([old_key]).seal(SECRET)
    both = SecretBox([new, old_key])
    assert both.open(sealed_under_old) == SECRET
    resealed = both.reseal(sealed_under_old)
    assert SecretBox([new]).open(resealed) == SECRET  # the old key can go now
    assert is_sealed(both.reseal(SECRET))  # plaintext (a row from before encryption) gets sealed
    with pytest.raises(SecretKeyError, match="does not decrypt"):
        SecretBox([new]).open(sealed_under_old)


def test_a_malformed_key_is_refused_with_how_to_make_one() -> None:
    with pytest.raises(SecretKeyError, match="webhooks new-key"):
        SecretBox(["not-a-key"])


def test_without_the_setting_a_local_key_file_is_made_once_for_the_owner_only(tmp_path: Path) -> None:
    settings = Settings(state_dir=tmp_path, webhook_secret_keys=None)
    sealed = secret_box(settings).seal(SECRET)
    key_file = tmp_path / "webhook-secret-keys"
    assert key_file.stat().st_mode & 0o777 == 0o600
    assert secret_box(settings).open(sealed) == SECRET  # the same key the second time


ALLOW_LOOPBACK = parse_networks("127.0.0.0/8")


@pytest.mark.parametrize(
    ("address", "kind"),
    [
        ("169.254.169.254", "cloud metadata"),
        ("fd00:ec2::254", "cloud metadata"),
        ("::ffff:169.254.169.254", "cloud metadata"),
        ("10.1.2.3", "private"),
        ("192.168.0.10", "private"),
        ("172.16.5.4", "private"),
        ("127.0.0.1", "loopback"),
        ("::1", "loopback"),
        ("169.254.10.1", "link-local"),
        ("fe80::1", "link-local"),
        ("0.0.0.0", "unspecified"),
        ("224.0.0.1", "multicast"),
        ("100.64.0.1", "not public"),  # carrier-grade NAT
    ],
)
def test_private_loopback_link_local_and_metadata_addresses_are_refused(address: str, kind: str) -> None:
    reason = refusal(ipaddress.ip_address(address), ())
    assert reason is not None and kind in reason


def test_public_addresses_and_allowed_networks_pass_but_metadata_never() -> None:
    assert refusal(ipaddress.ip_address("93.184.215.14"), ()) is None
    assert refusal(ipaddress.ip_address("2606:4700::1111"), ()) is None
    assert refusal(ipaddress.ip_address("127.0.0.1"), ALLOW_LOOPBACK) is None
    everything = parse_networks("0.0.0.0/0, ::/0")
    assert refusal(ipaddress.ip_address("169.254.169.254"), everything) is not None


def test_an_address_in_the_url_is_checked_without_a_resolver() -> None:
    with pytest.raises(TargetRefused, match="cloud metadata"):
        check_literal("http://169.254.169.254/latest/meta-data/", ())
    with pytest.raises(TargetRefused, match="loopback"):
        check_literal("http://[::1]:8080/hook", ())
    check_literal("https://hooks.example.org/x", ())  # a name: the resolver's to check
    check_literal("http://127.0.0.1:9/x", ALLOW_LOOPBACK)


class _Fixed(AbstractResolver):
    """A resolver answering one address for every name (a name that rebinds to it)."""

    def __init__(self, address: str) -> None:
        self.address = address

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        return [ResolveResult(hostname=host, host=self.address, port=port, family=family, proto=0, flags=0)]

    async def close(self) -> None:
        pass


async def test_the_resolver_refuses_a_name_that_resolves_to_a_refused_address() -> None:
    with pytest.raises(TargetRefused, match=r"hooks\.example\.org: 10\.0\.0\.8 is a private"):
        await GuardedResolver((), _Fixed("10.0.0.8")).resolve("hooks.example.org", 443)
    assert (await GuardedResolver((), _Fixed("93.184.215.14")).resolve("hooks.example.org", 443))[0][
        "host"
    ] == "93.184.215.14"


async def test_a_decimal_encoded_metadata_address_is_caught_as_what_it_resolves_to() -> None:
    # 2852039166 is 169.254.169.254 as one number; the system resolver reads it so (inet_aton).
    with pytest.raises(TargetRefused, match="cloud metadata"):
        await GuardedResolver(()).resolve("2852039166", 80)
