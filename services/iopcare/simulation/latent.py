"""The hidden side of a synthetic patient: a daily relapse-risk process and the outcomes drawn from it.

Every patient has a latent risk ``z`` in [0, 1] for each program day: the archetype's trajectory
(``risk_mean``, e.g. low and flat for a steady patient, climbing from week 3 for a relapsing one)
plus persistent day-to-day noise (an AR(1) process), plus the after-effect of a lapse. The outcomes
are drawn from it, day by day:

- a **lapse** starts on a day with probability ``sigmoid(LAPSE_INTERCEPT + LAPSE_SLOPE * z)``; it
  lasts a few days (use on the first day, and on each later day with ``USE_SHARE``), raises ``z``
  while it lasts and for a while after;
- the patient **drops out** (stops coming, for good) on a day with probability
  ``DROPOUT_CEILING * sigmoid((z - DROPOUT_MIDPOINT) / DROPOUT_SPREAD)``.

What the clinic's systems record is drawn from ``z`` too (timeline.py): craving and mood around the
patient's own centre shifted by ``z``, sleep, and the chance of attending, checking in and going to
a meeting scaled by :func:`engagement`. Use is reported in a check-in only some of the time
(``REPORTED_SHARE``), a screen detects use in the days before collection. The rules see only those
events; they never see ``z`` or the outcomes, which go to a file of their own
(:mod:`iopcare.simulation.outcomes`). docs/cohort.md derives the constants from published base
rates.
"""

from __future__ import annotations

import math
import random
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Final

PERSISTENCE: Final = 0.8
"""AR(1) coefficient of the daily noise: a bad day tends to be followed by another (about 5 days)."""
NOISE: Final = 0.06
"""Standard deviation of each day's innovation (the noise itself has sd 0.06 / sqrt(1 - 0.8^2) = 0.1)."""
LAPSE_INTERCEPT: Final = -8.0
LAPSE_SLOPE: Final = 10.0
"""Daily lapse hazard sigmoid(-8 + 10 z): 0.1 % at z = 0.12 (steady), 3 % at 0.45, 27 % at 0.7."""
LAPSE_MEAN_DAYS: Final = 4.0
"""Mean length of a lapse episode (geometric, at least one day)."""
USE_SHARE: Final = 0.5
"""Chance of use on each day of an episode after its first."""
LAPSE_LIFT: Final = 0.25
"""How much a lapse raises ``z`` while it lasts."""
AFTER_LIFT: Final = 0.15
AFTER_DECAY: Final = 0.9
"""After an episode, ``z`` stays raised by 0.15, decaying by a factor 0.9 a day."""
DROPOUT_CEILING: Final = 0.015
DROPOUT_MIDPOINT: Final = 0.45
DROPOUT_SPREAD: Final = 0.05
"""Daily dropout hazard 0.015 sigmoid((z - 0.45) / 0.05): it saturates (a lapse does not make a patient
leave on the spot): 0.002 % at z = 0.12, 1.3 % at 0.55, 1.5 % from 0.7."""
NO_DROPOUT_BEFORE: Final = 7
"""Nobody drops out in the first week in this model (the program's first contact days)."""
REPORTED_SHARE: Final = 0.7
"""Share of use days on which a check-in, if one is made, reports the use (self-report is incomplete)."""


def sigmoid(x: float) -> float:
    return 1.0 / (1.0 + math.exp(-x))


def engagement(z: float) -> float:
    """How much of the archetype's usual attendance, check-ins and meetings happen at risk ``z``:
    all of them up to z = 0.15, then less (0.6 at z = 0.55, the floor 0.2 from z = 0.95)."""
    return min(1.0, max(0.2, 1.15 - z))


@dataclass(frozen=True)
class Lapse:
    """A lapse episode: its first and last day, and the days of use within it."""

    start: int
    end: int
    use_days: tuple[int, ...]


@dataclass
class LatentCourse:
    """What the latent process produced for one patient over the observed days."""

    risk: list[float]
    lapses: list[Lapse] = field(default_factory=list)
    dropout: int | None = None  # the first day the patient no longer comes

    @property
    def use_days(self) -> set[int]:
        return {day for lapse in self.lapses for day in lapse.use_days}

    def lapsing(self, day: int) -> bool:
        return any(lapse.start <= day <= lapse.end for lapse in self.lapses)


def draw_latent(rng: random.Random, risk_mean: Sequence[float], *, can_drop_out: bool = True) -> LatentCourse:
    """Draw one patient's latent course over ``len(risk_mean)`` days (day 0 is intake: no lapse)."""
    noise = rng.gauss(0.0, NOISE / math.sqrt(1 - PERSISTENCE**2))  # start in the stationary state
    after = 0.0
    lapse_until = -1
    course = LatentCourse(risk=[])
    for day, mean in enumerate(risk_mean):
        noise = PERSISTENCE * noise + rng.gauss(0.0, NOISE)
        base = _clip(mean + noise + after)
        if day > lapse_until and day >= 1 and rng.random() < sigmoid(LAPSE_INTERCEPT + LAPSE_SLOPE * base):
            length = 1
            while rng.random() > 1 / LAPSE_MEAN_DAYS:
                length += 1
            end = min(day + length - 1, len(risk_mean) - 1)
            uses = (day, *(d for d in range(day + 1, end + 1) if rng.random() < USE_SHARE))
            course.lapses.append(Lapse(day, end, uses))
            lapse_until = end
        if day == lapse_until + 1 and course.lapses:
            after = AFTER_LIFT
        elif day > lapse_until:
            after *= AFTER_DECAY
        z = _clip(base + (LAPSE_LIFT if day <= lapse_until else 0.0))
        course.risk.append(z)
        if (
            can_drop_out
            and course.dropout is None
            and day >= NO_DROPOUT_BEFORE
            and rng.random() < DROPOUT_CEILING * sigmoid((z - DROPOUT_MIDPOINT) / DROPOUT_SPREAD)
        ):
            course.dropout = day
            # Nothing after this is observed; the risk is carried on flat for the record.
            course.risk.extend([z] * (len(risk_mean) - day - 1))
            break
    return course


def _clip(z: float) -> float:
    return min(1.0, max(0.0, z))


__all__ = ["Lapse", "LatentCourse", "draw_latent", "engagement", "sigmoid"]
