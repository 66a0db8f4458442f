"""Synthetic cohorts for demos, tests and benchmarks (:mod:`.cohort`; see its docstring for the
archetypes): the program (:mod:`.program`), its patients (:mod:`.roster`), how each archetype's course
goes (:mod:`.courses`) and a course turned into events (:mod:`.timeline`). Deterministic from a seed."""

from iopcare.simulation.cohort import cohort_outcomes, generate_cohort, iter_cohort, write_ndjson
from iopcare.simulation.program import ARCHETYPES, DEFAULT_ARCHETYPE_MIX, Archetype
from iopcare.simulation.roster import CohortPatient, cohort_roster

__all__ = [
    "ARCHETYPES",
    "DEFAULT_ARCHETYPE_MIX",
    "Archetype",
    "CohortPatient",
    "cohort_outcomes",
    "cohort_roster",
    "generate_cohort",
    "iter_cohort",
    "write_ndjson",
]
