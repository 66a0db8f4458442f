"""The cohort's patients: who each fictional patient is to the program and which archetype they follow."""

from __future__ import annotations

import random
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Literal

from iopcare.contract import (
    Substance,
)
from iopcare.simulation.program import (
    _MOUD_SHARE,
    _SUBSTANCES,
    ADOLESCENT_SHARE,
    ARCHETYPES,
    CASELOAD,
    COUNSELORS_PER_SUPERVISOR,
    DEFAULT_ARCHETYPE_MIX,
    OUTSIDE_FAMILY_THERAPY_SHARE,
    SOBER_LIVING_SHARE,
    Archetype,
)


@dataclass(frozen=True)
class CohortPatient:
    """One fictional patient of a cohort: who they are to the program and which course they follow."""

    patient_id: str
    archetype: Archetype
    counselor_id: str
    supervisor_id: str
    primary_substance: str
    lapse_substances: tuple[Substance, ...]
    prescribed: frozenset[Substance]
    fellowship: str
    house_id: str | None
    family_provider_id: str | None
    seed: int
    population: Literal["adult", "adolescent"] = "adult"


def cohort_roster(
    patients: int, *, seed: int, archetype_mix: Mapping[str, float] | None = None
) -> list[CohortPatient]:
    """The patients of the cohort that ``generate_cohort`` builds with the same arguments.

    Archetypes are allotted exactly to the mix (largest remainder), then shuffled; caseloads are
    balanced round-robin over ``ceil(patients / CASELOAD)`` counselors. Useful as ground truth, e.g.
    to check that the relapsing patients are the ones who got step-up alerts.
    """
    if patients < 0:
        raise ValueError("patients must be >= 0")
    rng = random.Random(seed)
    archetypes = _allot(patients, DEFAULT_ARCHETYPE_MIX if archetype_mix is None else archetype_mix)
    rng.shuffle(archetypes)
    counselors = max(1, -(-patients // CASELOAD))
    houses = max(3, patients // 6)
    providers = max(2, patients // 15)
    substances = list(_SUBSTANCES)
    weights = [_SUBSTANCES[s][0] for s in substances]
    seen: set[str] = set()
    roster = []
    for index, archetype in enumerate(archetypes):
        patient_id = f"p-{rng.getrandbits(40):010x}"
        while patient_id in seen:  # 40 bits make a clash rare, but ids must be unique
            patient_id = f"p-{rng.getrandbits(40):010x}"
        seen.add(patient_id)
        counselor = index % counselors
        primary = rng.choices(substances, weights)[0]
        _, lapse, fellowship = _SUBSTANCES[primary]
        on_moud = primary == "opioids" and rng.random() < _MOUD_SHARE
        in_house = rng.random() < SOBER_LIVING_SHARE
        outside_family = rng.random() < OUTSIDE_FAMILY_THERAPY_SHARE
        adolescent = rng.random() < ADOLESCENT_SHARE
        roster.append(
            CohortPatient(
                patient_id=patient_id,
                archetype=archetype,
                counselor_id=f"c-{counselor + 1:02d}",
                supervisor_id=f"s-{counselor // COUNSELORS_PER_SUPERVISOR + 1:02d}",
                primary_substance=primary,
                lapse_substances=lapse,
                prescribed=frozenset({"buprenorphine"}) if on_moud else frozenset(),
                fellowship=fellowship,
                house_id=f"house-{rng.randrange(houses) + 1:02d}" if in_house else None,
                family_provider_id=f"fam-{rng.randrange(providers) + 1:02d}" if outside_family else None,
                seed=rng.getrandbits(64),
                population="adolescent" if adolescent else "adult",
            )
        )
    return roster


def _allot(patients: int, mix: Mapping[str, float]) -> list[Archetype]:
    unknown = set(mix) - set(ARCHETYPES)
    if unknown:
        raise ValueError(f"unknown archetypes {sorted(unknown)}; known: {list(ARCHETYPES)}")
    if any(weight < 0 for weight in mix.values()) or sum(mix.values()) <= 0:
        raise ValueError("archetype weights must be >= 0 and not all zero")
    total = sum(mix.values())
    quotas = {a: patients * mix.get(a, 0.0) / total for a in ARCHETYPES}
    counts = {a: int(q) for a, q in quotas.items()}
    # Largest remainder: a 20-patient cohort at the default mix gets exactly one crisis patient.
    by_remainder = sorted(ARCHETYPES, key=lambda a: counts[a] - quotas[a])
    for archetype in by_remainder[: patients - sum(counts.values())]:
        counts[archetype] += 1
    return [a for a in ARCHETYPES for _ in range(counts[a])]
