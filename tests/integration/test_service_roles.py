"""Least privilege on real Postgres: each service's role holds only its grants, and the audit log
is append-only for every role, the owner included (migration 0015)."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from pathlib import Path

import asyncpg
import pytest

from iopcare.endpoints import Endpoints
from iopcare.settings import Settings
from iopcare.store.roles import ROLES, Service
from tests.databases import ROLE_PASSWORD, service_url

pytestmark = pytest.mark.integration

SERVICES: list[Service] = ["processor", "api", "dispatcher"]

# What each role may do to each table: S select, I insert, U update, D delete. A new table must be
# added here (the test names it), which is the moment to decide who may touch it.
GRANTS: dict[str, dict[Service, str]] = {
    "event_log": {"processor": "SI", "api": "S"},
    "dead_letters": {"processor": "SID"},
    "patient_state": {"processor": "SIU", "api": "S"},
    "patient_summary": {"processor": "SIU", "api": "S", "dispatcher": "S"},
    "stream_progress": {"processor": "SIU", "api": "S"},
    "quarantined_events": {"processor": "SIU", "api": "S"},
    "absence_checks": {"processor": "SIUD", "api": "S"},
    "alerts": {"processor": "SIU", "api": "SIU", "dispatcher": "SU"},
    "alert_transitions": {"processor": "SI", "api": "SI", "dispatcher": "S"},
    "outbox": {"processor": "SIU", "api": "SI"},
    "digests": {"api": "SU", "dispatcher": "SIU"},
    "api_tokens": {"api": "S"},
    "audit_log": {"api": "I"},
    "auth_failures": {"api": "SIUD"},
    "webhook_endpoints": {"dispatcher": "SU"},
    "webhook_deliveries": {"dispatcher": "SIU"},
    "dispatcher_progress": {"dispatcher": "SIU"},
}
PRIVILEGE = {"S": "SELECT", "I": "INSERT", "U": "UPDATE", "D": "DELETE"}


async def _connect(database_url: str, service: Service) -> asyncpg.Connection:
    return await asyncpg.connect(service_url(database_url, service))


async def _one_audit_row(owner: asyncpg.Connection) -> None:
    await owner.execute(
        "INSERT INTO audit_log (request_id, actor, role, token_id, action, outcome, route) "
        "VALUES (gen_random_uuid(), 'staff-c01', 'counselor', 'tok', 'alerts.list', 'allowed', '/v1/alerts')"
    )


async def test_every_table_grants_each_service_exactly_its_privileges(clean_db: str) -> None:
    owner = await asyncpg.connect(clean_db)
    try:
        tables = {
            r["tablename"]
            for r in await owner.fetch(
                "SELECT tablename FROM pg_tables "
                "WHERE schemaname = 'public' AND tablename <> 'schema_migrations'"
            )
        }
        assert tables == set(GRANTS), (
            f"decide the grants of {sorted(tables ^ set(GRANTS))} (migration and GRANTS)"
        )
        for table, by_service in GRANTS.items():
            for service in SERVICES:
                held = {
                    letter
                    for letter, privilege in PRIVILEGE.items()
                    if await owner.fetchval(
                        "SELECT has_table_privilege($1, $2, $3)", ROLES[service], table, privilege
                    )
                }
                truncate = await owner.fetchval(
                    "SELECT has_table_privilege($1, $2, 'TRUNCATE')", ROLES[service], table
                )
                assert ("".join(sorted(held)), truncate) == (
                    "".join(sorted(by_service.get(service, ""))),
                    False,
                ), f"{ROLES[service]} on {table}"
        for service in SERVICES:
            assert not await owner.fetchval(
                "SELECT has_schema_privilege($1, 'public', 'CREATE')", ROLES[service]
            ), f"{ROLES[service]} may create objects"
    finally:
        await owner.close()


@pytest.mark.parametrize("service", SERVICES)
async def test_no_service_role_can_rewrite_or_empty_the_audit_log(clean_db: str, service: Service) -> None:
    owner = await asyncpg.connect(clean_db)
    connection = await _connect(clean_db, service)
    try:
        await _one_audit_row(owner)
        assert await connection.fetchval("SELECT current_user") == ROLES[service]
        for statement in (
            "UPDATE audit_log SET outcome = 'denied'",
            "DELETE FROM audit_log",
            "TRUNCATE audit_log",
        ):
            with pytest.raises(asyncpg.InsufficientPrivilegeError, match="permission denied"):
                await connection.execute(statement)
        assert await owner.fetchval("SELECT count(*) FROM audit_log WHERE outcome = 'allowed'") == 1
    finally:
        await connection.close()
        await owner.close()


async def test_the_owner_too_is_refused_by_the_trigger(clean_db: str) -> None:
    owner = await asyncpg.connect(clean_db)
    try:
        await _one_audit_row(owner)
        for statement, operation in (
            ("UPDATE audit_log SET outcome = 'denied'", "UPDATE"),
            ("DELETE FROM audit_log", "DELETE"),
            ("TRUNCATE audit_log", "TRUNCATE"),
        ):
            with pytest.raises(asyncpg.InsufficientPrivilegeError, match=f"append-only: {operation}"):
                await owner.execute(statement)
        assert await owner.fetchval("SELECT count(*) FROM audit_log") == 1
    finally:
        await owner.close()


async def test_the_api_role_appends_to_the_audit_log_and_reads_no_webhook_secret(clean_db: str) -> None:
    api = await _connect(clean_db, "api")
    try:
        await _one_audit_row(api)
        for table in ("webhook_endpoints", "audit_log", "dead_letters"):
            with pytest.raises(asyncpg.InsufficientPrivilegeError):
                await api.fetch(f"SELECT * FROM {table}")
        with pytest.raises(asyncpg.InsufficientPrivilegeError):
            await api.execute("CREATE TABLE shadow (x int)")
    finally:
        await api.close()


async def test_setup_gives_each_role_a_login_with_a_scram_password(
    endpoints: Endpoints, database_url: str, unique_topics: Settings, tmp_path: Path
) -> None:
    env = dict(
        os.environ,
        IOPCARE_KAFKA_BOOTSTRAP=endpoints.kafka_bootstrap,
        IOPCARE_DATABASE_URL=database_url,
        IOPCARE_EVENTS_TOPIC=unique_topics.events_topic,
        IOPCARE_DEAD_LETTER_TOPIC=unique_topics.dead_letter_topic,
        IOPCARE_ALERTS_TOPIC=unique_topics.alerts_topic,
        IOPCARE_TOPIC_PARTITIONS="2",
        **{f"IOPCARE_{service.upper()}_DATABASE_PASSWORD": ROLE_PASSWORD for service in SERVICES},
    )
    done = await asyncio.to_thread(
        subprocess.run,
        [sys.executable, "-m", "iopcare.cli", "setup"],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        cwd=tmp_path,
    )
    assert done.returncode == 0, done.stderr
    for role in ROLES.values():
        assert f"database role {role}: login with its password" in done.stdout
    owner = await asyncpg.connect(database_url)
    try:
        rows = await owner.fetch(
            "SELECT rolname, rolcanlogin, rolsuper, rolcreaterole, rolpassword FROM pg_authid "
            "WHERE rolname = ANY($1)",
            list(ROLES.values()),
        )
    finally:
        await owner.close()
    assert len(rows) == 3
    for row in rows:
        assert (row["rolcanlogin"], row["rolsuper"], row["rolcreaterole"]) == (True, False, False)
        assert row["rolpassword"].startswith("SCRAM-SHA-256$4096:")
    assert ROLE_PASSWORD not in done.stdout + done.stderr
