"""Where Kafka and Postgres are: from the environment, or else the embedded runtime."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING
from urllib.parse import urlsplit, urlunsplit

from iopcare.settings import Settings
from iopcare.store.roles import Service, as_role

if TYPE_CHECKING:
    from iopcare.embedded.runtime import RuntimeAddresses


class EndpointsUnavailable(RuntimeError):
    """Neither the environment nor a running embedded runtime says where Kafka/Postgres are."""


@dataclass(frozen=True)
class Endpoints:
    """Addresses of the broker and the database this process talks to."""

    kafka_bootstrap: str
    database_url: str
    embedded: bool


def resolve_endpoints(
    settings: Settings, *, start_embedded: bool = False, service: Service | None = None
) -> Endpoints:
    """``IOPCARE_KAFKA_BOOTSTRAP`` / ``IOPCARE_DATABASE_URL`` win; whichever is unset comes from the
    embedded runtime under ``settings.state_dir`` (started first when ``start_embedded``). A
    ``service`` connects to the embedded Postgres as its own role (``IOPCARE_DATABASE_URL`` names
    the role itself)."""
    if settings.kafka_bootstrap and settings.database_url:
        return Endpoints(settings.kafka_bootstrap, settings.database_url, embedded=False)
    addresses = _embedded(settings, start_embedded, "IOPCARE_KAFKA_BOOTSTRAP and IOPCARE_DATABASE_URL")
    database_url = settings.database_url
    if database_url is None:
        database_url = addresses.database_url if service is None else as_role(addresses.database_url, service)
    return Endpoints(
        kafka_bootstrap=settings.kafka_bootstrap or addresses.kafka_bootstrap,
        database_url=database_url,
        embedded=True,
    )


def resolve_database_url(settings: Settings) -> str:
    """Postgres only (a command that needs no broker): ``IOPCARE_DATABASE_URL``, else the running
    embedded runtime's."""
    if settings.database_url:
        return settings.database_url
    return _embedded(settings, False, "IOPCARE_DATABASE_URL").database_url


def resolve_kafka_bootstrap(settings: Settings) -> str:
    """The broker only (a command that needs no database): ``IOPCARE_KAFKA_BOOTSTRAP``, else the
    running embedded runtime's."""
    if settings.kafka_bootstrap:
        return settings.kafka_bootstrap
    return _embedded(settings, False, "IOPCARE_KAFKA_BOOTSTRAP").kafka_bootstrap


def _embedded(settings: Settings, start: bool, variables: str) -> RuntimeAddresses:
    from iopcare.embedded import EmbeddedRuntime

    runtime = EmbeddedRuntime(settings.state_dir / "dev")
    if start:
        return runtime.up()
    recorded = runtime.read()
    if recorded is None or not runtime.is_up():
        raise EndpointsUnavailable(
            f"no server configured: set {variables}, or start the embedded ones with `iopcare dev up`"
        )
    return recorded


def redacted(database_url: str) -> str:
    """The database URL without its password, to name in an error."""
    parts = urlsplit(database_url)
    if parts.password is None:
        return database_url
    netloc = parts.netloc.replace(f":{parts.password}@", ":***@", 1)
    return urlunsplit(parts._replace(netloc=netloc))
