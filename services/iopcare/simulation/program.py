"""The synthetic program: its plan, schedule, sources and the archetypes of patient courses."""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType
from typing import Final, Literal

from iopcare.contract import (
    Substance,
)

Archetype = Literal["steady", "improving", "disengaging", "relapsing", "crisis"]
ARCHETYPES: Final[tuple[Archetype, ...]] = ("steady", "improving", "disengaging", "relapsing", "crisis")
DEFAULT_ARCHETYPE_MIX: Final[Mapping[str, float]] = MappingProxyType(
    {"steady": 0.4, "improving": 0.2, "disengaging": 0.2, "relapsing": 0.15, "crisis": 0.05}
)

LEVEL_OF_CARE: Final = "2.1"
STEP_UP_LEVEL: Final = "2.5"
PROGRAM_DAYS: Final = 90
WEEKLY_PLAN: Final[Mapping[str, int | float]] = MappingProxyType(
    {"group_sessions": 4, "individual_sessions": 1, "hours": 9.0, "fellowship_meetings": 2}
)
CASELOAD: Final = 12
"""Patients per counselor."""
COUNSELORS_PER_SUPERVISOR: Final = 4
ADOLESCENT_SHARE: Final = 0.15
"""Share of adolescents (the enrolment's population; reported as a subgroup by ``iopcare evaluate``)."""
SOBER_LIVING_SHARE: Final = 0.4
"""Share of patients who live in a sober-living house (and consent to its reports)."""
OUTSIDE_FAMILY_THERAPY_SHARE: Final = 0.75
"""Share whose family therapy is with an outside provider; the rest have it in-house as sessions."""

EHR_SOURCE: Final = "ehr.clinic-a"
CHECKIN_SOURCE: Final = "checkin-app"
LAB_SOURCE: Final = "lab.acme"

# Group sessions: Mon/Tue/Thu evenings and Saturday morning, 3 hours each (weekday -> start hour).
_GROUP_SLOTS: Final = {0: 18, 1: 18, 3: 18, 5: 10}
_GROUP_MINUTES: Final = 180
_INDIVIDUAL_MINUTES: Final = 50
_FAMILY_MINUTES: Final = 60
_FAMILY_EVERY_DAYS: Final = 14
_CONSENT_DAYS: Final = 365
_HOUSE_SCOPE: Final = ("attendance", "housing", "toxicology")
_FAMILY_SCOPE: Final = ("attendance",)

HouseKind = Literal[
    "curfew_violation",
    "positive_test",
    "missed_house_meeting",
    "conflict",
    "left",
    "evicted",
    "compliant_week",
]
Disposition = Literal["completed", "transferred", "left_against_advice", "administrative", "other"]

# Primary substance -> (weight, what a lapse shows on a screen, fellowship usually attended).
_SUBSTANCES: Final[dict[str, tuple[float, tuple[Substance, ...], str]]] = {
    "alcohol": (0.35, ("alcohol",), "AA"),
    "opioids": (0.25, ("fentanyl", "opiate"), "NA"),
    "methamphetamine": (0.15, ("methamphetamine", "amphetamine"), "NA"),
    "cocaine": (0.15, ("cocaine",), "CA"),
    "cannabis": (0.10, ("cannabis",), "SMART"),
}
_MOUD_SHARE: Final = 0.6
"""Share of patients with opioid use disorder on buprenorphine (expected on every screen)."""
