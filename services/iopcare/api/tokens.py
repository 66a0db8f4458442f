"""Bearer tokens: created by ``iopcare tokens create``, stored hashed, revocable, with an expiry.

A token reads ``iop_<token id>_<secret>``. Only its SHA-256 is stored: a token is 256 bits of
randomness, so a fast hash is enough (no password-style stretching), and a leaked table yields no
usable token. The token id is the public handle an operator lists and revokes by.
"""

from __future__ import annotations

import hashlib
import secrets
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Literal, get_args

from iopcare.store.alerts import Connection

Role = Literal["counselor", "supervisor", "integrator", "ops"]
"""counselor: their caseload; supervisor: their team's caseloads; integrator: POST /v1/events only;
ops: health and metrics, no patient data."""

ROLES: tuple[Role, ...] = get_args(Role)

_PREFIX = "iop_"


class TokenError(ValueError):
    """A token that cannot be created or revoked as asked."""


@dataclass(frozen=True)
class Principal:
    """Who is calling: the token's role and subject."""

    token_id: str
    role: Role
    subject: str


@dataclass(frozen=True)
class TokenRecord:
    """A token as ``iopcare tokens list`` shows it (never the secret)."""

    token_id: str
    role: Role
    subject: str
    label: str | None
    created_at: datetime
    expires_at: datetime | None
    revoked_at: datetime | None


def _digest(token: str) -> bytes:
    return hashlib.sha256(token.encode()).digest()


async def create_token(
    connection: Connection, role: str, subject: str, *, expires_at: datetime | None, label: str | None = None
) -> tuple[str, str]:
    """A new token for ``subject`` in ``role``: (token id, the token itself, shown once)."""
    if role not in ROLES:
        raise TokenError(f"unknown role {role!r}: expected one of {', '.join(ROLES)}")
    if not subject or len(subject) > 128 or not subject.isprintable() or " " in subject:
        raise TokenError("subject must be a staff id or system name: 1-128 printable characters, no spaces")
    token_id = secrets.token_hex(4)
    token = f"{_PREFIX}{token_id}_{secrets.token_urlsafe(32)}"
    await connection.execute(
        "INSERT INTO api_tokens (token_id, secret_sha256, role, subject, label, expires_at) "
        "VALUES ($1, $2, $3, $4, $5, $6)",
        token_id,
        _digest(token),
        role,
        subject,
        label,
        expires_at,
    )
    return token_id, token


async def authenticate(connection: Connection, token: str, now: datetime) -> Principal | None:
    """The token's principal, or None if it is unknown, revoked or expired."""
    if not token.startswith(_PREFIX) or len(token) > 200:
        return None
    row = await connection.fetchrow(
        "SELECT token_id, role, subject FROM api_tokens WHERE secret_sha256 = $1 "
        "AND revoked_at IS NULL AND (expires_at IS NULL OR expires_at > $2)",
        _digest(token),
        now,
    )
    return Principal(row["token_id"], row["role"], row["subject"]) if row else None


async def revoke_token(connection: Connection, token_id: str, now: datetime) -> None:
    """Revoke a token by its id; it fails from the next request on."""
    revoked = await connection.fetchval(
        "UPDATE api_tokens SET revoked_at = coalesce(revoked_at, $2) WHERE token_id = $1 RETURNING token_id",
        token_id,
        now,
    )
    if revoked is None:
        raise TokenError(f"no token with id {token_id!r}")


async def list_tokens(connection: Connection) -> Sequence[TokenRecord]:
    rows = await connection.fetch(
        "SELECT token_id, role, subject, label, created_at, expires_at, revoked_at FROM api_tokens "
        "ORDER BY created_at, token_id"
    )
    return [TokenRecord(**dict(row)) for row in rows]


__all__ = [
    "ROLES",
    "Principal",
    "Role",
    "TokenError",
    "TokenRecord",
    "authenticate",
    "create_token",
    "list_tokens",
    "revoke_token",
]
