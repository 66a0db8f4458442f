"""The ``iopcare`` command line."""

from __future__ import annotations

import asyncio
import contextlib
import json
import signal
import sys
import time
from collections.abc import Awaitable, Callable
from datetime import datetime
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any, TypeVar

import click

from iopcare.settings import Settings, get_settings

if TYPE_CHECKING:
    from iopcare.domain.rules import RulePack

T = TypeVar("T")
F = TypeVar("F", bound=Callable[..., Any])


def _echo_err(message: str) -> None:
    click.echo(message, err=True)


class _Commands(click.Group):
    """The command group: a setting that does not validate (IOPCARE_API_PORT=abc) or a server that is
    not configured is one line naming the fix, never a traceback."""

    def invoke(self, ctx: click.Context) -> Any:
        from pydantic import ValidationError

        from iopcare.endpoints import EndpointsUnavailable

        try:
            return super().invoke(ctx)
        except ValidationError as exc:
            if exc.title != "Settings":
                raise
            problems = "; ".join(
                f"IOPCARE_{'_'.join(str(p) for p in e['loc']).upper()}: {e['msg']}" for e in exc.errors()
            )
            raise click.ClickException(f"invalid setting: {problems}") from None
        except EndpointsUnavailable as exc:
            raise click.ClickException(str(exc)) from None


@click.group(cls=_Commands, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="iopcare")
def main() -> None:
    """iopcare: care coordination for intensive outpatient programs."""


# -- dev: the embedded runtime ----------------------------------------------------------------


@main.group()
def dev() -> None:
    """Start and stop the embedded broker and Postgres (for the demo and the tests)."""


@dev.command("up")
def dev_up() -> None:
    """Start the embedded broker and Postgres (reusing running ones), create topics, migrate."""
    from iopcare.endpoints import resolve_endpoints

    settings = get_settings()
    endpoints = resolve_endpoints(settings, start_embedded=True)
    _prepare(endpoints.kafka_bootstrap, endpoints.database_url)
    click.echo(f"kafka    {endpoints.kafka_bootstrap}")
    click.echo(f"postgres {endpoints.database_url}")
    click.echo(f"state    {(settings.state_dir / 'dev').resolve()}")
    click.echo("Other shells pick these up automatically; or export:")
    click.echo(f"  export IOPCARE_KAFKA_BOOTSTRAP={endpoints.kafka_bootstrap}")
    click.echo(f"  export IOPCARE_DATABASE_URL={endpoints.database_url}")


@dev.command("down")
def dev_down() -> None:
    """Stop the embedded broker (its data goes) and Postgres (its data stays)."""
    from iopcare.embedded import EmbeddedRuntime

    stopped = EmbeddedRuntime(get_settings().state_dir / "dev").down()
    click.echo("stopped: " + (", ".join(stopped) if stopped else "nothing was running"))


@dev.command("status")
def dev_status() -> None:
    """Say whether the embedded runtime is up and where."""
    from iopcare.embedded import EmbeddedRuntime

    runtime = EmbeddedRuntime(get_settings().state_dir / "dev")
    recorded = runtime.read()
    if recorded is None or not runtime.is_up():
        click.echo("embedded runtime: down")
        sys.exit(1)
    click.echo(f"embedded runtime: up\nkafka    {recorded.kafka_bootstrap}\npostgres {recorded.database_url}")


def _prepare(kafka_bootstrap: str, database_url: str) -> None:
    """Topics, migrations, the services' database logins (docs/operations.md, "Database roles") and
    webhook secrets still in plaintext encrypted: without a password in the settings, a role gets a
    login only on the embedded Postgres, which trusts local connections."""
    from iopcare.topics import ensure_topics

    settings = get_settings()
    created = ensure_topics(kafka_bootstrap, settings)
    if created:
        click.echo("created topics: " + ", ".join(created))
    asyncio.run(_prepare_database(database_url, settings))


async def _prepare_database(database_url: str, settings: Settings) -> None:
    """The database part of :func:`_prepare`, on one connection as the owner."""
    import asyncpg

    from iopcare.dispatcher.webhooks.secrets import is_sealed, secret_box
    from iopcare.dispatcher.webhooks.store import reseal_secrets
    from iopcare.store.migrate import migrate
    from iopcare.store.roles import enable_logins

    connection = await asyncpg.connect(database_url)
    try:
        await migrate(connection, report=click.echo)
        await enable_logins(
            connection,
            settings.service_database_passwords(),
            trusted_server=settings.database_url is None,
            report=click.echo,
        )
        # Rows registered before migration 0018 hold their secret in plaintext. The key is looked up
        # only when one does (without the setting that makes a local key file).
        secrets = [r["secret"] for r in await connection.fetch("SELECT secret FROM webhook_endpoints")]
        if not all(is_sealed(secret) for secret in secrets):
            box = secret_box(settings)
            changed = await reseal_secrets(
                connection, lambda value: value if is_sealed(value) else box.seal(value)
            )
            click.echo(f"encrypted {changed} webhook secret(s) stored in plaintext")
    finally:
        await connection.close()


@main.command()
def setup() -> None:
    """Create the Kafka topics and apply database migrations (idempotent; the deploy's one-shot job)."""
    from iopcare.endpoints import resolve_endpoints

    endpoints = resolve_endpoints(get_settings())
    _prepare(endpoints.kafka_bootstrap, endpoints.database_url)
    click.echo("topics and schema are ready")


@main.command()
@click.option(
    "--web-port",
    type=click.IntRange(1, 65535),
    default=None,
    help="Port for /metrics and /healthz (default 6066).",
)
def worker(web_port: int | None) -> None:
    """Run a processor worker (Faust). Start several for more throughput: they share the partitions."""
    from faust.worker import Worker

    from iopcare.endpoints import resolve_endpoints
    from iopcare.logs import logging_config
    from iopcare.processor.app import build_app

    settings = get_settings()
    if web_port is not None:
        settings = settings.model_copy(update={"worker_web_port": web_port})
    endpoints = resolve_endpoints(settings, service="processor")
    app = build_app(settings, endpoints, app_id=settings.processor_app_id)
    Worker(
        app,
        loglevel=settings.log_level.lower(),
        quiet=True,
        logging_config=logging_config("worker", settings.log_level, settings.log_format),
    ).execute_from_commandline()


@main.command()
@click.option(
    "--port",
    type=click.IntRange(1, 65535),
    default=None,
    help="Port to listen on (default IOPCARE_API_PORT, 8080).",
)
def api(port: int | None) -> None:
    """Run the HTTP API and counselor inbox. Tokens come from `iopcare tokens create`."""
    from iopcare.api.serve import serve
    from iopcare.endpoints import resolve_endpoints
    from iopcare.logs import configure as configure_logging

    settings = get_settings()
    if port is not None:
        settings = settings.model_copy(update={"api_port": port})
    configure_logging("api", settings.log_level, settings.log_format)
    asyncio.run(serve(settings, resolve_endpoints(settings, service="api")))


# -- tokens -----------------------------------------------------------------------------------


@main.group()
def tokens() -> None:
    """API bearer tokens: create (shown once), list, revoke."""


def _with_connection(work: Callable[[Any], Awaitable[T]]) -> T:
    """Run ``work`` on one connection to the configured (or embedded) database; a database that is
    not there, or refuses the login, is one line naming the fix."""
    import asyncpg

    from iopcare.endpoints import redacted, resolve_database_url

    url = resolve_database_url(get_settings())

    async def run() -> T:
        try:
            connection = await asyncpg.connect(url, timeout=10)
        except (OSError, TimeoutError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
            reason = str(exc) or type(exc).__name__
            raise click.ClickException(
                f"cannot reach Postgres at {redacted(url)} ({reason}): check IOPCARE_DATABASE_URL, or start "
                "the embedded one with `iopcare dev up`"
            ) from None
        try:
            return await work(connection)
        finally:
            await connection.close()

    return asyncio.run(run())


@tokens.command("create")
@click.option("--role", type=click.Choice(["counselor", "supervisor", "integrator", "ops"]), required=True)
@click.option("--subject", required=True, help="The staff id (counselor, supervisor) or the system's name.")
@click.option("--expires-in-days", type=click.IntRange(1, 3650), default=90, show_default=True)
@click.option("--label", default=None, help="A note for operators, e.g. the device or integration.")
def tokens_create(role: str, subject: str, expires_in_days: int, label: str | None) -> None:
    """Create a token and print it once (only its hash is stored)."""
    from datetime import UTC, timedelta

    from iopcare.api.tokens import TokenError, create_token

    expires_at = datetime.now(UTC) + timedelta(days=expires_in_days)
    try:
        token_id, token = _with_connection(
            lambda c: create_token(c, role, subject, expires_at=expires_at, label=label)
        )
    except TokenError as exc:
        _echo_err(str(exc))
        sys.exit(2)
    _echo_err(f"token {token_id} for {role} {subject}, expires {expires_at:%Y-%m-%d}.")
    _echo_err("Store it now: it is not shown again.")
    click.echo(token)


@tokens.command("list")
def tokens_list() -> None:
    """Tokens with their role, subject, expiry and revocation (never the secret)."""
    from iopcare.api.tokens import list_tokens

    for record in _with_connection(list_tokens):
        status = "revoked" if record.revoked_at else "active"
        expires = f"{record.expires_at:%Y-%m-%d}" if record.expires_at else "never"
        click.echo(
            f"{record.token_id}  {record.role:<10} {record.subject:<24} {status:<8} expires {expires}"
            + (f"  {record.label}" if record.label else "")
        )


@tokens.command("revoke")
@click.argument("token_id")
def tokens_revoke(token_id: str) -> None:
    """Revoke a token by its id: it fails from the next request on."""
    from datetime import UTC

    from iopcare.api.tokens import TokenError, revoke_token

    try:
        _with_connection(lambda c: revoke_token(c, token_id, datetime.now(UTC)))
    except TokenError as exc:
        _echo_err(str(exc))
        sys.exit(2)
    click.echo(f"revoked {token_id}")


@main.command()
@click.option(
    "--web-port",
    type=click.IntRange(1, 65535),
    default=None,
    help="Port for /metrics, /healthz, /readyz (default 6067).",
)
def dispatcher(web_port: int | None) -> None:
    """Run the dispatcher: alert events from iop.alerts.v1 to signed webhooks (docs/webhooks.md)."""
    from iopcare.dispatcher.service import Dispatcher
    from iopcare.endpoints import resolve_endpoints
    from iopcare.logs import configure as configure_logging

    settings = get_settings()
    if web_port is not None:
        settings = settings.model_copy(update={"dispatcher_web_port": web_port})
    configure_logging("dispatcher", settings.log_level, settings.log_format)
    endpoints = resolve_endpoints(settings, service="dispatcher")
    asyncio.run(Dispatcher(settings, endpoints).run())


def _stop_on_sigterm_as_on_ctrl_c() -> None:
    """SIGTERM (a process supervisor, `timeout`, `docker stop`) does what Ctrl-C does: the command's
    cleanup runs and stops every process and server it started. Python's default for SIGTERM is to
    exit at once, leaving the children running."""

    def interrupt(_signum: int, _frame: object) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, interrupt)


@main.command()
@click.option("--patients", type=click.IntRange(1, 5000), default=48, show_default=True)
@click.option("--seed", type=int, default=7, show_default=True)
@click.option(
    "--keep-serving/--exit",
    default=None,
    help="Keep the worker and the inbox up after the cohort, until Ctrl-C (default: when run in a terminal).",
)
def demo(patients: int, seed: int, keep_serving: bool | None) -> None:
    """Start the embedded runtime and stream a synthetic cohort through a real worker and the API."""
    from iopcare.embedded.demo import fresh_runtime, run_demo

    _stop_on_sigterm_as_on_ctrl_c()
    from iopcare.endpoints import Endpoints

    settings = get_settings()
    runtime = None
    kafka, database = settings.kafka_bootstrap, settings.database_url
    if kafka and database:
        click.echo("== Using the broker and Postgres named by IOPCARE_KAFKA_BOOTSTRAP / IOPCARE_DATABASE_URL")
    else:
        # Its own runtime, emptied first: a second demo must not start from the first one's state
        # (the cohort's event ids repeat), and the `iopcare dev` runtime keeps whatever it holds.
        runtime = fresh_runtime(settings)
        click.echo(f"== Starting an empty embedded broker and Postgres for the demo ({runtime.state_dir})")
        addresses = runtime.up()
        kafka, database = kafka or addresses.kafka_bootstrap, database or addresses.database_url
    endpoints = Endpoints(kafka, database, embedded=runtime is not None)
    try:
        _prepare(endpoints.kafka_bootstrap, endpoints.database_url)
        click.echo(f"   kafka {endpoints.kafka_bootstrap}   postgres {endpoints.database_url}")
        if keep_serving is None:
            keep_serving = sys.stdin.isatty()
        run_demo(settings, endpoints, patients=patients, seed=seed, say=click.echo, keep_serving=keep_serving)
    finally:
        if runtime is not None:
            runtime.down()
            click.echo(
                "\nStopped the demo's broker and Postgres; the next demo starts from empty ones again."
            )


@main.command()
@click.option("--patients", type=click.IntRange(1, 100_000), default=200, show_default=True)
@click.option("--seed", type=int, default=1, show_default=True)
@click.option("--days", type=click.IntRange(1, 730), default=90, show_default=True)
@click.option("--start", type=click.DateTime(["%Y-%m-%d"]), default="2026-01-05", show_default=True)
@click.option(
    "--out", type=click.Path(dir_okay=False, path_type=Path), required=True, help="NDJSON file ('-': stdout)."
)
@click.option(
    "--outcomes",
    "outcomes_file",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="Also write what happened to each patient (lapses, dropout, crises: the ground truth "
    "`iopcare evaluate` scores against) to this file, one JSON line per patient.",
)
def cohort(
    patients: int, seed: int, days: int, start: datetime, out: Path, outcomes_file: Path | None
) -> None:
    """Write a deterministic synthetic cohort (patient archetypes over a program) as NDJSON.

    Each patient's events are drawn from a hidden daily relapse risk (docs/cohort.md); with
    --outcomes the lapses, dropouts and crises drawn from it are written beside the events.
    """
    from iopcare.evaluation.outcomes import write_outcomes
    from iopcare.simulation import cohort_outcomes, iter_cohort, write_ndjson

    events = iter_cohort(patients, seed=seed, start=start.date(), days=days)
    if str(out) == "-":
        write_ndjson(events, sys.stdout.buffer)
    else:
        written = write_ndjson(events, out)
        click.echo(f"wrote {written:,} events for {patients} patients to {out}")
    if outcomes_file is not None:
        outcomes = cohort_outcomes(patients, seed=seed, start=start.date(), days=days)
        write_outcomes(outcomes, outcomes_file)
        lapses = sum(1 for o in outcomes for lapse in o.lapses if not lapse.before_intake)
        dropouts = sum(1 for o in outcomes if o.dropout is not None)
        _echo_err(
            f"wrote the outcomes of {len(outcomes)} patients ({lapses} lapse episodes, "
            f"{dropouts} dropouts) to {outcomes_file}"
        )


# -- db ---------------------------------------------------------------------------------------


@main.group()
def db() -> None:
    """Database schema."""


@db.command("migrate")
def db_migrate() -> None:
    """Apply pending SQL migrations (safe to run from several processes at once)."""
    from iopcare.endpoints import resolve_database_url
    from iopcare.store.migrate import migrate_url

    url = resolve_database_url(get_settings())
    applied = asyncio.run(migrate_url(url, report=click.echo))
    click.echo(f"{len(applied)} migration(s) applied; schema is current")


# -- webhooks ---------------------------------------------------------------------------------


@main.group()
def webhooks() -> None:
    """Webhook endpoints of counselors and teams (docs/webhooks.md)."""


@webhooks.command("add")
@click.option(
    "--counselor",
    metavar="STAFF_ID",
    help="A staff member's own endpoint (a counselor's, or a supervisor's for the alerts escalated to them).",
)
@click.option(
    "--team", metavar="SUPERVISOR_ID", help="A team's endpoint: every alert of this supervisor's team."
)
@click.option("--url", required=True, help="http(s) URL the alerts are POSTed to.")
@click.option(
    "--kinds",
    default=None,
    help="Comma-separated alert event kinds to send (default: all but `updated`, the repeat triggers).",
)
def webhooks_add(counselor: str | None, team: str | None, url: str, kinds: str | None) -> None:
    """Register an endpoint and print its signing secret (shown this once only)."""
    from typing import Literal, get_args

    from pydantic import TypeAdapter, ValidationError

    from iopcare.contract import AlertEventKind, StaffId
    from iopcare.dispatcher.webhooks.policy import DEFAULT_EVENT_KINDS, check_url, origin
    from iopcare.dispatcher.webhooks.secrets import new_signing_secret, secret_box
    from iopcare.dispatcher.webhooks.store import add_endpoint
    from iopcare.dispatcher.webhooks.targets import TargetRefused, check_target
    from iopcare.networks import parse_networks

    if (counselor is None) == (team is None):
        raise click.UsageError("give exactly one of --counselor STAFF_ID or --team SUPERVISOR_ID")
    owner_kind: Literal["counselor", "team"] = "counselor" if counselor is not None else "team"
    owner_id = counselor or team or ""
    try:
        TypeAdapter(StaffId).validate_python(owner_id)
    except ValidationError:
        raise click.BadParameter(
            "a staff id is 3-64 letters, digits, '_' or '-'", param_hint="owner"
        ) from None
    settings = get_settings()
    try:
        check_url(url)
        resolved = asyncio.run(check_target(url, parse_networks(settings.webhook_allowed_networks)))
    except (ValueError, TargetRefused) as exc:
        raise click.BadParameter(str(exc), param_hint="--url") from None
    if not resolved:
        _echo_err(f"warning: {origin(url)} does not resolve now; it is checked again at every connection")
    chosen = (
        tuple(DEFAULT_EVENT_KINDS)
        if kinds is None
        else tuple(k.strip() for k in kinds.split(",") if k.strip())
    )
    unknown = sorted(set(chosen) - set(get_args(AlertEventKind)))
    if unknown or not chosen:
        raise click.BadParameter(
            f"kinds are among {', '.join(get_args(AlertEventKind))}", param_hint="--kinds"
        )
    secret = new_signing_secret()
    sealed = secret_box(settings).seal(secret)
    endpoint_id = _with_connection(lambda c: add_endpoint(c, owner_kind, owner_id, url, sealed, chosen))
    click.echo(f"endpoint {endpoint_id}: {owner_kind} {owner_id} -> {origin(url)} ({', '.join(chosen)})")
    click.echo(
        "signing secret (shown once; the receiver verifies webhook-signature with it, docs/webhooks.md):"
    )
    click.echo(secret)


@webhooks.command("rotate-secret")
@click.argument("endpoint_id", type=int)
@click.option(
    "--overlap-hours",
    type=click.FloatRange(0, 24 * 30),
    default=24.0,
    show_default=True,
    help="How long the old secret stays active beside the new one (both sign every POST meanwhile).",
)
def webhooks_rotate_secret(endpoint_id: int, overlap_hours: float) -> None:
    """Give an endpoint a new signing secret and print it (shown this once only)."""
    from iopcare.dispatcher.webhooks.secrets import new_signing_secret, secret_box
    from iopcare.dispatcher.webhooks.store import rotate_secret

    secret = new_signing_secret()
    sealed = secret_box(get_settings()).seal(secret)
    if not _with_connection(lambda c: rotate_secret(c, endpoint_id, sealed, overlap_hours * 3600)):
        _echo_err(f"no webhook endpoint {endpoint_id}")
        sys.exit(1)
    click.echo(
        f"endpoint {endpoint_id}: new signing secret; the old one signs too for {overlap_hours:g} more hours"
    )
    click.echo(secret)


@webhooks.command("reencrypt")
def webhooks_reencrypt() -> None:
    """Encrypt every stored signing secret under the newest key of IOPCARE_WEBHOOK_SECRET_KEYS (after
    adding a key; then the old key can be dropped). Also encrypts any secret still in plaintext."""
    from iopcare.dispatcher.webhooks.secrets import secret_box
    from iopcare.dispatcher.webhooks.store import reseal_secrets

    box = secret_box(get_settings())
    changed = _with_connection(lambda c: reseal_secrets(c, box.reseal))
    click.echo(f"{changed} endpoint(s) re-encrypted under the newest key")


@webhooks.command("new-key")
def webhooks_new_key() -> None:
    """Print a new key for IOPCARE_WEBHOOK_SECRET_KEYS (put it first; keep the old ones after it)."""
    from iopcare.dispatcher.webhooks.secrets import new_key

    click.echo(new_key())


@webhooks.command("list")
def webhooks_list() -> None:
    """Every endpoint with its health (secrets and URL paths are never shown)."""
    from iopcare.dispatcher.webhooks.policy import origin
    from iopcare.dispatcher.webhooks.store import list_endpoints

    endpoints = _with_connection(list_endpoints)
    if not endpoints:
        click.echo("no webhook endpoints")
        return
    click.echo(f"{'id':>4}  {'owner':<28} {'state':<9} {'failures':>8} {'pending':>7}  url")
    for e in endpoints:
        owner = f"{e.owner_kind} {e.owner_id}"
        state = "enabled" if e.enabled else "DISABLED"
        click.echo(
            f"{e.id:>4}  {owner:<28} {state:<9} {e.consecutive_failures:>8} {e.pending:>7}  {origin(e.url)}"
        )
        if not e.enabled:
            when = e.disabled_at.isoformat(timespec="seconds") if e.disabled_at else "?"
            click.echo(f"      disabled {when}: {e.disabled_reason}")


@webhooks.command("enable")
@click.argument("endpoint_id", type=int)
def webhooks_enable(endpoint_id: int) -> None:
    """Enable an endpoint again (its failure count starts from zero)."""
    from iopcare.dispatcher.webhooks.store import enable_endpoint

    if not _with_connection(lambda c: enable_endpoint(c, endpoint_id)):
        _echo_err(f"no webhook endpoint {endpoint_id}")
        sys.exit(1)
    click.echo(f"endpoint {endpoint_id} enabled")


@webhooks.command("disable")
@click.argument("endpoint_id", type=int)
def webhooks_disable(endpoint_id: int) -> None:
    """Disable an endpoint; its pending deliveries are dropped (the inbox still has the alerts)."""
    from iopcare.dispatcher.webhooks.store import disable_endpoint, endpoint_exists

    async def disable(connection: Any) -> tuple[bool, bool]:
        if not await endpoint_exists(connection, endpoint_id):
            return False, False
        return True, await disable_endpoint(connection, endpoint_id, "disabled by an operator")

    exists, disabled = _with_connection(disable)
    if not exists:
        _echo_err(f"no webhook endpoint {endpoint_id}")
        sys.exit(1)
    click.echo(f"endpoint {endpoint_id} {'disabled' if disabled else 'was already disabled'}")


# -- schemas ----------------------------------------------------------------------------------


@main.group()
def schemas() -> None:
    """The published contract in schemas/, generated from the pydantic models."""


_schemas_dir = click.option(
    "--dir",
    "directory",
    type=click.Path(path_type=Path, file_okay=False),
    default=Path("schemas"),
    show_default=True,
)


@schemas.command("export")
@_schemas_dir
def schemas_export(directory: Path) -> None:
    """Write JSON Schema files and asyncapi.yaml from the models."""
    from iopcare.api.app import openapi
    from iopcare.contract.schemas import OPENAPI_PATH, export

    written = export(directory, {OPENAPI_PATH: openapi()})
    click.echo(f"wrote {len(written)} files under {directory}/")


@schemas.command("check")
@_schemas_dir
def schemas_check(directory: Path) -> None:
    """Fail when the checked-in schemas differ from the models."""
    from iopcare.api.app import openapi
    from iopcare.contract.schemas import OPENAPI_PATH, check

    differences = check(directory, {OPENAPI_PATH: openapi()})
    if differences:
        for line in differences:
            _echo_err(f"schema drift: {line}")
        _echo_err("Run `iopcare schemas export` and commit the result.")
        sys.exit(1)
    click.echo(f"{directory}/ matches the models")


# -- state ------------------------------------------------------------------------------------


@main.group()
def state() -> None:
    """Patients' stored engagement state: rebuild it from the event log."""


@state.command("rebuild")
@click.option("--patient", "patients", multiple=True, help="Only this patient (repeatable); default: all.")
@click.option("--apply", is_flag=True, help="Write the rebuilt state of every patient that differs.")
@click.option(
    "--demo", is_flag=True, help="On the last `iopcare demo`'s database (starts its embedded runtime)."
)
def state_rebuild(patients: tuple[str, ...], apply: bool, demo: bool) -> None:
    """Recompute each patient's state from event_log and report every difference from the stored one.

    Exit status 0 when nothing differs (or everything that did was repaired with --apply), 1 when
    differences remain.
    """
    import asyncpg

    from iopcare.store.rebuild import rebuild_states

    settings = get_settings()
    from iopcare.rulepacks import DEFAULT_PACK, load_pack

    pack = load_pack(settings.rule_pack) if settings.rule_pack else DEFAULT_PACK
    runtime = None
    if demo:
        from iopcare.embedded.demo import demo_runtime

        runtime = demo_runtime(settings)
        if not runtime.has_data():
            _echo_err("No demo database: run `iopcare demo` first.")
            sys.exit(2)
        database_url = runtime.up().database_url
    else:
        from iopcare.endpoints import resolve_database_url

        database_url = resolve_database_url(settings)

    def progress(done: int, total: int) -> None:
        click.echo(f"\r  {done}/{total} patients", nl=done == total, err=True)

    async def run() -> Any:
        pool = await asyncpg.create_pool(database_url, min_size=1, max_size=2)
        try:
            return await rebuild_states(
                pool, patient_ids=list(patients) or None, apply=apply, progress=progress, pack=pack
            )
        finally:
            await pool.close()

    try:
        report = asyncio.run(run())
    finally:
        if runtime is not None:
            runtime.down()
    for difference in report.differences:
        verb = "repaired" if difference.repaired else "differs"
        click.echo(f"{difference.patient_id}: {verb}: {', '.join(difference.fields)}")
    if patients and report.patients < len(set(patients)):
        click.echo(f"{len(set(patients)) - report.patients} of the given patients have no logged events")
    click.echo(
        f"{report.patients} patients, {report.events} events: {len(report.differences)} differences"
        + (" (repaired)" if apply and report.differences else "")
    )
    if report.differences and not apply:
        click.echo("Run again with --apply to write the rebuilt states.")
        sys.exit(1)


# -- publish ----------------------------------------------------------------------------------


class _Progress:
    """A progress line on stderr at most twice a second, for long files."""

    def __init__(self, stream: IO[bytes], total_bytes: int | None) -> None:
        self._stream = stream
        self._total = total_bytes
        self._started = time.monotonic()
        self._last = self._started  # first line after half a second: short files stay quiet
        self.shown = False

    def __call__(self, lines: int) -> None:
        now = time.monotonic()
        if now - self._last < 0.5:
            return
        self._last = now
        rate = lines / max(now - self._started, 1e-9)
        share = ""
        if self._total:
            with contextlib.suppress(OSError):
                share = f" {100 * self._stream.tell() / self._total:5.1f}%"
        click.echo(f"\r  {lines:,} lines{share}  {rate:,.0f} lines/s", err=True, nl=False)
        self.shown = True


@main.command()
@click.argument("file", type=click.File("rb"))
@click.option("--topic", default=None, help="Defaults to IOPCARE_EVENTS_TOPIC (iop.events.v1).")
def publish(file: IO[bytes], topic: str | None) -> None:
    """Validate every line of an NDJSON FILE (or - for stdin) and send the valid ones.

    Each invalid line is reported with its number and reason; the exit status is 1 if any line was
    invalid or not acknowledged.
    """
    from iopcare.endpoints import resolve_kafka_bootstrap
    from iopcare.publish import EventPublisher, PublishError, numbered_lines

    settings = get_settings()
    kafka_bootstrap = resolve_kafka_bootstrap(settings)
    total: int | None = None
    try:
        total = Path(file.name).stat().st_size if file.name not in ("<stdin>", "-") else None
    except (OSError, TypeError):
        total = None
    progress = _Progress(file, total)
    try:
        with EventPublisher(
            kafka_bootstrap,
            topic or settings.events_topic,
            timeout_seconds=settings.publish_timeout_seconds,
        ) as publisher:
            report = publisher.publish_all(numbered_lines(file), on_progress=progress)
    except PublishError as exc:
        raise click.ClickException(str(exc)) from None
    if progress.shown:
        _echo_err("")
    for bad in report.invalid:
        _echo_err(f"line {bad.line_number}: {bad.reason}: {bad.detail}")
    for failure in report.failed:
        _echo_err(f"not acknowledged: {failure}")
    rate = report.sent / report.elapsed_seconds if report.elapsed_seconds else 0.0
    click.echo(
        f"sent {report.sent:,} events to {topic or settings.events_topic} in {report.elapsed_seconds:.1f}s "
        f"({rate:,.0f}/s); invalid {len(report.invalid)}; not acknowledged {len(report.failed)}"
    )
    for event_type, count in sorted(report.by_type.items()):
        click.echo(f"  {event_type:<32} {count:>8,}")
    if not report.ok:
        sys.exit(1)


_READABLE_FILE = click.Path(exists=True, dir_okay=False, path_type=Path)
_events_option = click.option(
    "--events",
    "events_file",
    type=_READABLE_FILE,
    required=True,
    help="NDJSON file of events, in the order they happened (e.g. from `iopcare cohort`).",
)
_rules_option = click.option(
    "--rules",
    "rules_file",
    type=_READABLE_FILE,
    default=None,
    help="Rule pack (TOML). Default: IOPCARE_RULE_PACK, else the packaged default pack.",
)


def _compare_option(help: str) -> Callable[[F], F]:
    return click.option("--compare", "compare_file", type=_READABLE_FILE, default=None, help=help)


def _packs(rules_file: Path | None, compare_file: Path | None) -> list[RulePack]:
    """The pack to run (``--rules``, else IOPCARE_RULE_PACK, else the default) and the one to
    compare it with; an invalid pack is reported with every problem and exits 2."""
    from iopcare.domain.rules import RulePackError
    from iopcare.rulepacks import DEFAULT_PACK, load_pack

    try:
        chosen = rules_file or get_settings().rule_pack
        packs = [load_pack(chosen) if chosen is not None else DEFAULT_PACK]
        if compare_file is not None:
            packs.append(load_pack(compare_file))
    except RulePackError as exc:
        _echo_err(str(exc))
        sys.exit(2)
    return packs


def _pack_progress(version: str) -> Callable[[int, int, int], None]:
    """A progress line on stderr for one pack's run over a file: share read, events, rate."""
    started = time.perf_counter()

    def progress(done: int, total: int, events: int) -> None:
        elapsed = time.perf_counter() - started
        share = 100 * done / total if total else 100.0
        rate = events / elapsed if elapsed else 0.0
        click.echo(f"\r  pack {version}: {share:5.1f}%  {events:,} events  {rate:,.0f}/s", err=True, nl=False)

    return progress


@main.command()
@_events_option
@_rules_option
@_compare_option("A second rule pack: both run over the same events, side by side.")
@click.option(
    "--jobs",
    type=click.IntRange(min=1),
    default=None,
    help="Processes to split the file across, by patient (same result). Default: the machine's "
    "cores for a file over 8 MB, else 1.",
)
def replay(events_file: Path, rules_file: Path | None, compare_file: Path | None, jobs: int | None) -> None:
    """Backtest: the alerts a rule pack would have raised over past events, offline.

    The same rules and alert lifecycle as the processor, on the events' own clock. Use --compare to
    see what a threshold change would do to the alert volume before deploying it.
    """
    from iopcare.replay import render, replay_file

    runs = []
    for pack in _packs(rules_file, compare_file):
        runs.append(replay_file(events_file, pack, _pack_progress(pack.version), jobs))
        _echo_err("")
    for line in render(runs):
        click.echo(line)


@main.command()
@click.option(
    "--events",
    "events_file",
    type=_READABLE_FILE,
    default=None,
    help="NDJSON file of events, in the order they happened (e.g. from `iopcare cohort`).",
)
@click.option(
    "--outcomes",
    "outcomes_file",
    type=_READABLE_FILE,
    default=None,
    help="What happened to each patient, one JSON line each (e.g. from `iopcare cohort --outcomes`).",
)
@_rules_option
@_compare_option(
    "A second rule pack, scored over the same events and outcomes, side by side; with --database, a "
    "candidate pack run beside the active one over the period's event log (shadow mode)."
)
@click.option(
    "--database",
    "from_database",
    is_flag=True,
    help="Judge the live alerts by what the counselors recorded when acknowledging them (precision, "
    "override rate, time to acknowledge per rule), from IOPCARE_DATABASE_URL, instead of a file.",
)
@click.option(
    "--since",
    type=click.DateTime(["%Y-%m-%d"]),
    default=None,
    help="With --database: the first day of alerts raised (default: 90 days before --until).",
)
@click.option(
    "--until",
    type=click.DateTime(["%Y-%m-%d"]),
    default=None,
    help="With --database: the day after the last (default: tomorrow, UTC).",
)
@click.option("--json", "as_json_output", is_flag=True, help="Print one JSON object instead of the tables.")
def evaluate(
    events_file: Path | None,
    outcomes_file: Path | None,
    rules_file: Path | None,
    compare_file: Path | None,
    from_database: bool,
    since: datetime | None,
    until: datetime | None,
    as_json_output: bool,
) -> None:
    """Score a rule pack against outcomes: precision, sensitivity, lead time, burden, risk AUC.

    Replays the events as `iopcare replay` does and judges every alert against what happened
    (docs/rules.md, "Judging a pack"): overall, per rule, per population and level of care. With
    --database, judges the alerts the system raised by the counselors' own acknowledgement outcomes.
    """
    if from_database:
        if events_file or outcomes_file:
            raise click.UsageError("--database judges the live alerts: give no --events or --outcomes")
        _evaluate_database(since, until, as_json_output, rules_file, compare_file)
        return
    if since or until:
        raise click.UsageError("--since and --until go with --database")
    if events_file is None or outcomes_file is None:
        raise click.UsageError("give --events and --outcomes (or --database)")
    from iopcare.evaluate import as_json, evaluate_files, render
    from iopcare.evaluation.outcomes import OutcomesError

    runs = []
    for pack in _packs(rules_file, compare_file):
        try:
            runs.append(evaluate_files(events_file, outcomes_file, pack, _pack_progress(pack.version)))
        except OutcomesError as exc:
            _echo_err("")
            _echo_err(str(exc))
            sys.exit(2)
        _echo_err("")
    if as_json_output:
        click.echo(json.dumps(as_json(runs), indent=2))
        return
    for line in render(runs):
        click.echo(line)


def _evaluate_database(
    since: datetime | None,
    until: datetime | None,
    as_json_output: bool,
    rules_file: Path | None,
    compare_file: Path | None,
) -> None:
    from datetime import UTC, timedelta

    from iopcare.evaluate import render_shifts, render_verdicts, shadow_alerts, verdicts_json
    from iopcare.evaluation.acknowledgements import verdicts
    from iopcare.evaluation.shadow import compare_packs
    from iopcare.store.acknowledgements import acknowledgement_records, outcomes_by_dedup_key

    last = until.date() if until else datetime.now(UTC).date() + timedelta(days=1)
    first = since.date() if since else last - timedelta(days=90)
    if first >= last:
        raise click.UsageError(f"--since {first} is not before --until {last}")
    start = datetime.combine(first, datetime.min.time(), UTC)
    end = datetime.combine(last, datetime.min.time(), UTC)
    records = _with_connection(lambda c: acknowledgement_records(c, start, end))
    found = verdicts(records, until=end)
    document = verdicts_json(found, first, last)
    lines = render_verdicts(found, first, last)
    if compare_file is not None:
        # The active pack: --rules, else the one the processor runs (IOPCARE_RULE_PACK).
        active, candidate = _packs(rules_file, compare_file)
        _echo_err(f"replaying the event log through {active.version} and {candidate.version} ...")

        async def both(connection: Any) -> tuple[list[list[Any]], dict[str, Any]]:
            async with connection.transaction():
                alerts = await shadow_alerts(connection, [active, candidate], start, end)
            return alerts, await outcomes_by_dedup_key(connection, start, end)

        (now, then), outcomes = _with_connection(both)
        shifts = compare_packs(now, then, outcomes)
        document["compare"] = {
            "rule_pack": active.version,
            "candidate": candidate.version,
            "per_rule": {s.rule_id: s.summary() for s in shifts},
        }
        lines += render_shifts(active, candidate, shifts)
    if as_json_output:
        click.echo(json.dumps(document, indent=2))
        return
    for line in lines:
        click.echo(line)


if __name__ == "__main__":  # pragma: no cover
    main()
