"""CI's shortened reliability scenarios 1-3, 8 and 9: a small cohort through real workers with kill -9,
a 1 → 3 → 2 rebalance, a 10 s Postgres outage, a Postgres hard crash and a whole-group restart, each
held to the exactness standard of ``tests/reliability/exactness.py``. ``make reliability`` runs the
full versions and writes the figures into docs/reliability.md; these only assert.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from types import ModuleType

import pytest

from iopcare.embedded import EmbeddedRuntime
from iopcare.endpoints import Endpoints
from tests.conftest import PROJECT_ROOT
from tests.reliability import (
    scenario_crash,
    scenario_group_restart,
    scenario_outage,
    scenario_postgres_crash,
    scenario_rebalance,
)
from tests.reliability.harness import Env

pytestmark = [pytest.mark.integration, pytest.mark.slow]


@pytest.fixture
async def env(endpoints: Endpoints, tmp_path: Path) -> AsyncIterator[Env]:
    """The session's broker and Postgres; its embedded runtime, if any, for the outage."""
    runtime = EmbeddedRuntime(PROJECT_ROOT / ".iopcare" / "test-runtime") if endpoints.embedded else None
    environment = Env(endpoints.kafka_bootstrap, endpoints.database_url, tmp_path, runtime=runtime)
    yield environment
    await environment.close()


@pytest.mark.parametrize(
    "scenario",
    [scenario_crash, scenario_rebalance, scenario_outage, scenario_postgres_crash, scenario_group_restart],
    ids=["crash", "rebalance", "postgres_outage", "postgres_crash", "group_restart"],
)
async def test_quick_fault_scenario_keeps_every_event_and_alert_exactly_once(
    env: Env, scenario: ModuleType
) -> None:
    outcome = await scenario.run(env, quick=True)
    assert outcome.passed, "\n".join([*outcome.failures, str(outcome.figures)])
