"""The services' database roles (created by migration 0015, docs/operations.md "Database roles").

Each service connects as its own role with only the grants its code needs; nothing connects as
the owner of the tables but the migrations and the operator's commands (tokens, webhooks, state
rebuild). ``iopcare setup`` gives each role LOGIN: with the password from the settings, or, on the
embedded Postgres (trust authentication on 127.0.0.1), with none.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
from collections.abc import Callable, Mapping
from typing import Literal
from urllib.parse import quote, urlsplit, urlunsplit

import asyncpg

Service = Literal["processor", "api", "dispatcher"]

ROLES: dict[Service, str] = {
    "processor": "iopcare_processor",
    "api": "iopcare_api",
    "dispatcher": "iopcare_dispatcher",
}
"""The Postgres role of each service."""

_SCRAM_ITERATIONS = 4096  # libpq's and Postgres' own default


def scram_verifier(password: str, *, salt: bytes | None = None, iterations: int = _SCRAM_ITERATIONS) -> str:
    """The SCRAM-SHA-256 verifier Postgres stores for ``password`` (RFC 5802 and 7677, in the form
    of ``pg_authid.rolpassword``), computed here as psql's ``\\password`` does, so the password
    itself never reaches the server or its statement log."""
    salt = os.urandom(16) if salt is None else salt
    salted = hashlib.pbkdf2_hmac("sha256", password.encode(), salt, iterations)
    client_key = hmac.new(salted, b"Client Key", hashlib.sha256).digest()
    stored_key = hashlib.sha256(client_key).digest()
    server_key = hmac.new(salted, b"Server Key", hashlib.sha256).digest()
    salt_b64, stored_b64, server_b64 = (base64.b64encode(b).decode() for b in (salt, stored_key, server_key))
    return f"SCRAM-SHA-256${iterations}:{salt_b64}${stored_b64}:{server_b64}"


async def enable_logins(
    connection: asyncpg.Connection,
    passwords: Mapping[str, str | None],
    *,
    trusted_server: bool,
    report: Callable[[str], None] = lambda _line: None,
) -> None:
    """Give each service role LOGIN: with its password when one is given; without one only on a
    server that trusts local connections (the embedded one). A role with neither is left as it
    is: a DBA manages its logins (for instance login users made members of it)."""
    for service, role in ROLES.items():
        password = passwords.get(service)
        if password:
            verifier = scram_verifier(password)
            await connection.execute(
                await connection.fetchval(
                    "SELECT format('ALTER ROLE %I LOGIN PASSWORD %L', $1::text, $2::text)", role, verifier
                )
            )
            report(f"database role {role}: login with its password")
        elif trusted_server:
            if not await connection.fetchval("SELECT rolcanlogin FROM pg_roles WHERE rolname = $1", role):
                await connection.execute(f'ALTER ROLE "{role}" LOGIN')
            report(f"database role {role}: login (embedded Postgres, local trust)")
        else:
            report(f"database role {role}: no password in the settings, left as it is")


def as_role(database_url: str, service: Service, password: str | None = None) -> str:
    """``database_url`` with the service's role as its user (and ``password``, if given)."""
    parts = urlsplit(database_url)
    host = parts.netloc.rpartition("@")[2]
    user = quote(ROLES[service], safe="")
    credentials = f"{user}:{quote(password, safe='')}" if password else user
    return urlunsplit(parts._replace(netloc=f"{credentials}@{host}"))
