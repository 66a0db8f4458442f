"""Webhook signing secrets: made in the Standard Webhooks form, kept encrypted at rest.

A signing secret has to be readable to sign with (as any webhook sender's), so it cannot be hashed
like an API token. It is stored as a Fernet token (AES-128-CBC with HMAC-SHA256, from the
``cryptography`` library) under keys from ``IOPCARE_WEBHOOK_SECRET_KEYS``: a comma-separated list,
newest first. :class:`SecretBox` encrypts with the first key and decrypts with any of them
(``MultiFernet``), so a key is rotated by putting a new one first, re-encrypting the rows
(``iopcare webhooks reencrypt``) and then dropping the old one (docs/webhooks.md, "Keys").

Without the setting, a process on a developer's machine uses a key file under ``IOPCARE_STATE_DIR``
(made on first use, readable by its owner only), as the embedded runtime keeps its data there.
"""

from __future__ import annotations

import base64
import logging
import os
import secrets as random
from collections.abc import Sequence
from pathlib import Path

from cryptography.fernet import Fernet, InvalidToken, MultiFernet

from iopcare.settings import Settings

log = logging.getLogger(__name__)

SECRET_PREFIX = "whsec_"
KEY_FILE = "webhook-secret-keys"
_FERNET_PREFIX = "gAAAAA"  # a Fernet token: version byte 0x80, then the timestamp's leading zeros


class SecretKeyError(RuntimeError):
    """The keys that decrypt webhook secrets are missing, malformed or not the ones used."""


def new_signing_secret() -> str:
    """A Standard Webhooks secret: ``whsec_`` and the base64 of 32 random bytes."""
    return SECRET_PREFIX + base64.b64encode(random.token_bytes(32)).decode()


def new_key() -> str:
    """A new Fernet key (urlsafe base64 of 32 random bytes), for IOPCARE_WEBHOOK_SECRET_KEYS."""
    return Fernet.generate_key().decode()


def is_sealed(value: str) -> bool:
    """Whether a stored value is an encrypted secret (a Fernet token) rather than plaintext."""
    return value.startswith(_FERNET_PREFIX)


class SecretBox:
    """Encrypts signing secrets with the newest key, decrypts with any."""

    def __init__(self, keys: Sequence[str]) -> None:
        if not keys:
            raise SecretKeyError("no webhook secret key given")
        try:
            self._fernet = MultiFernet([Fernet(key.strip().encode()) for key in keys])
        except (ValueError, TypeError):
            raise SecretKeyError(
                "a webhook secret key is not a Fernet key (32 bytes, urlsafe base64): make one with "
                "`iopcare webhooks new-key`"
            ) from None

    def seal(self, secret: str) -> str:
        return self._fernet.encrypt(secret.encode()).decode()

    def open(self, sealed: str) -> str:
        try:
            return self._fernet.decrypt(sealed.encode()).decode()
        except InvalidToken:
            raise SecretKeyError(
                "a webhook secret does not decrypt with IOPCARE_WEBHOOK_SECRET_KEYS (a key was dropped "
                "before `iopcare webhooks reencrypt` ran, or the keys are another deployment's)"
            ) from None

    def reseal(self, sealed: str) -> str:
        """The same secret encrypted under the newest key (plaintext is sealed as it is)."""
        if not is_sealed(sealed):
            return self.seal(sealed)
        try:
            return self._fernet.rotate(sealed.encode()).decode()
        except InvalidToken:
            raise SecretKeyError(
                "a webhook secret does not decrypt with IOPCARE_WEBHOOK_SECRET_KEYS"
            ) from None


def secret_box(settings: Settings) -> SecretBox:
    """The box of ``IOPCARE_WEBHOOK_SECRET_KEYS``, else of the local key file (made if missing)."""
    if settings.webhook_secret_keys is not None:
        return SecretBox(settings.webhook_secret_keys.get_secret_value().split(","))
    return SecretBox(_local_keys(settings.state_dir / KEY_FILE))


def _local_keys(path: Path) -> list[str]:
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(descriptor, "w") as file:
            file.write(new_key() + "\n")
        log.warning(
            "IOPCARE_WEBHOOK_SECRET_KEYS is unset: webhook secrets are encrypted with a key made in %s "
            "(fine on a developer's machine; set the variable anywhere else)",
            path,
        )
    return [line.strip() for line in path.read_text().splitlines() if line.strip()]


__all__ = [
    "SECRET_PREFIX",
    "SecretBox",
    "SecretKeyError",
    "is_sealed",
    "new_key",
    "new_signing_secret",
    "secret_box",
]
