"""`iopcare tokens`: a token is printed once, stored only as a hash, listed without its secret,
and refused by the API's authentication once revoked."""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
from datetime import UTC, datetime

import asyncpg
import pytest

from iopcare.api.tokens import authenticate
from iopcare.endpoints import Endpoints

pytestmark = pytest.mark.integration


def _iopcare(endpoints: Endpoints, database_url: str, *arguments: str) -> subprocess.CompletedProcess[str]:
    env = dict(
        os.environ, IOPCARE_DATABASE_URL=database_url, IOPCARE_KAFKA_BOOTSTRAP=endpoints.kafka_bootstrap
    )
    return subprocess.run(
        [sys.executable, "-m", "iopcare.cli", *arguments], env=env, capture_output=True, text=True, timeout=60
    )


async def test_create_list_revoke(endpoints: Endpoints, clean_db: str) -> None:
    created = _iopcare(
        endpoints, clean_db, "tokens", "create", "--role", "counselor", "--subject", "staff-c07"
    )
    assert created.returncode == 0, created.stderr
    token = created.stdout.strip()
    assert token.startswith("iop_") and "not shown again" in created.stderr
    connection = await asyncpg.connect(clean_db)
    try:
        stored = await connection.fetchrow("SELECT token_id, secret_sha256 FROM api_tokens")
        assert bytes(stored["secret_sha256"]) == hashlib.sha256(token.encode()).digest()
        principal = await authenticate(connection, token, datetime.now(UTC))
        assert principal is not None and (principal.role, principal.subject) == ("counselor", "staff-c07")

        listed = _iopcare(endpoints, clean_db, "tokens", "list")
        assert stored["token_id"] in listed.stdout and "active" in listed.stdout
        assert token not in listed.stdout and token.split("_")[-1] not in listed.stdout

        revoked = _iopcare(endpoints, clean_db, "tokens", "revoke", stored["token_id"])
        assert revoked.returncode == 0, revoked.stderr
        assert await authenticate(connection, token, datetime.now(UTC)) is None
        assert "revoked" in _iopcare(endpoints, clean_db, "tokens", "list").stdout
    finally:
        await connection.close()
    bad = _iopcare(endpoints, clean_db, "tokens", "create", "--role", "counselor", "--subject", "two words")
    assert bad.returncode == 2 and "subject" in bad.stderr
    assert _iopcare(endpoints, clean_db, "tokens", "revoke", "nope").returncode == 2
