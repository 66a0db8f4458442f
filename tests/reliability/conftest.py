"""The API's test clinic (real API, Postgres and broker) for the security and API hostile-input scenarios."""

from tests.integration.clinic import clinic  # noqa: F401 (a fixture)
