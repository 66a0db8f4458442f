"""Where Kafka and Postgres are: from the environment, or else the embedded runtime."""

from __future__ import annotations

from dataclasses import dataclass

from iopcare.settings import Settings


class EndpointsUnavailable(RuntimeError):
    """Neither the environment nor a running embedded runtime says where Kafka/Postgres are."""


@dataclass(frozen=True)
class Endpoints:
    """Addresses of the broker and the database this process talks to."""

    kafka_bootstrap: str
    database_url: str
    embedded: bool


def resolve_endpoints(settings: Settings, *, start_embedded: bool = False) -> Endpoints:
    """``IOPCARE_KAFKA_BOOTSTRAP`` / ``IOPCARE_DATABASE_URL`` win; whichever is unset comes from the
    embedded runtime under ``settings.state_dir`` (started first when ``start_embedded``)."""
    if settings.kafka_bootstrap and settings.database_url:
        return Endpoints(settings.kafka_bootstrap, settings.database_url, embedded=False)

    from iopcare.embedded import EmbeddedRuntime

    runtime = EmbeddedRuntime(settings.state_dir / "dev")
    if start_embedded:
        addresses = runtime.up()
    else:
        recorded = runtime.read()
        if recorded is None or not runtime.is_up():
            raise EndpointsUnavailable(
                "No Kafka/Postgres configured: set IOPCARE_KAFKA_BOOTSTRAP and IOPCARE_DATABASE_URL, "
                "or start the embedded runtime with `iopcare dev up`."
            )
        addresses = recorded
    return Endpoints(
        kafka_bootstrap=settings.kafka_bootstrap or addresses.kafka_bootstrap,
        database_url=settings.database_url or addresses.database_url,
        embedded=True,
    )
