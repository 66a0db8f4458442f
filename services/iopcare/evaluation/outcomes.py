"""Outcomes: what actually happened to each patient, the ground truth a rule pack is judged against.

One JSON object per line and per patient (``iopcare cohort --outcomes`` writes them for a synthetic
cohort; a clinic can write the same from its charts: lapse dates from use reports and screens
confirmed in a session, dropout from the last attended contact, crisis from the incident log)::

    {"patient_id": "p-…", "population": "adult", "program_start": "2026-01-05", "observed_days": 90,
     "lapses": [{"start": "2026-02-09", "end": "2026-02-12", "use_days": 3}],
     "dropout": null, "crises": ["2026-03-01"], "archetype": "relapsing"}

- ``lapses``: episodes of use, first and last day (a lapse marked ``"before_intake": true`` is use
  before the program began, which an intake screen can still show; it is not counted as a lapse to
  foresee);
- ``dropout``: the first day the patient no longer came (not the later discharge date), or null;
- ``crises``: days of a safety crisis;
- ``archetype`` (optional): the synthetic course the patient followed, so results can be shown for
  steady patients; a clinic's own file may leave it out (or say ``"steady"`` for patients its
  clinicians judged stable).

Outcomes are never events: they do not go on the event topic and the rules never see them.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Iterator
from datetime import date
from pathlib import Path
from typing import IO, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError


class _Outcome(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class LapseEpisode(_Outcome):
    start: date
    end: date
    use_days: int = Field(ge=1)
    before_intake: bool = False


class PatientOutcome(_Outcome):
    """One patient's outcomes over the days observed from the program's start."""

    patient_id: str = Field(min_length=1, max_length=128)
    population: Literal["adult", "adolescent"] = "adult"
    program_start: date
    observed_days: int = Field(ge=1)
    lapses: tuple[LapseEpisode, ...] = ()
    dropout: date | None = None
    crises: tuple[date, ...] = ()
    archetype: str | None = None


class OutcomesError(ValueError):
    """An outcomes file that cannot be read; names the line and the problem."""


def write_outcomes(outcomes: Iterable[PatientOutcome], destination: str | os.PathLike[str] | IO[str]) -> int:
    """Write one JSON line per patient; return how many."""
    if isinstance(destination, str | os.PathLike):
        with Path(destination).open("w", encoding="utf-8") as stream:
            return write_outcomes(outcomes, stream)
    count = 0
    for outcome in outcomes:
        destination.write(outcome.model_dump_json(exclude_defaults=False) + "\n")
        count += 1
    return count


def read_outcomes(path: Path) -> Iterator[PatientOutcome]:
    """The outcomes of a file written as above; a bad line raises :class:`OutcomesError` naming it."""
    with path.open("r", encoding="utf-8") as stream:
        for number, line in enumerate(stream, 1):
            if not line.strip():
                continue
            try:
                yield PatientOutcome.model_validate(json.loads(line))
            except (ValueError, ValidationError) as exc:
                problem = exc.errors()[0] if isinstance(exc, ValidationError) else None
                where = ".".join(str(p) for p in problem["loc"]) if problem else ""
                detail = f"{where}: {problem['msg']}" if problem else str(exc)
                raise OutcomesError(f"{path}:{number}: not a patient outcome ({detail})") from None


__all__ = ["LapseEpisode", "OutcomesError", "PatientOutcome", "read_outcomes", "write_outcomes"]
