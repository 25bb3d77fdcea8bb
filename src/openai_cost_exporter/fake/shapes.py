"""Calendar shapes of simulated projects: how a project's day amounts change from one date to the next.

The generated projects (fake/plan.py) all follow one weekday rhythm around a constant level. The alert-quality
corpus (fake/corpus.py) needs the shapes real organizations show besides: a weekend-heavy project, one that never
spends on weekends, steady growth, a lasting step up or down, a quiet holiday, a project that appears mid-history.
A `DayShape` is a per-mille multiplier of the project's day amounts by date (on top of its rhythm and noise);
a `ShapedProject` adds such a project by name, from a generator of its own, so the other projects' numbers do not
change. Nothing here is random: the multiplier is a pure function of the date.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from decimal import Decimal

from openai_cost_exporter.fake.traffic import FLAT, Profile

PERMILLE = 1000
EVERY_DAY = (PERMILLE,) * 7


@dataclass(frozen=True, slots=True)
class DayShape:
    """Per-mille multipliers of a project's day by date; every part is 1000 (unchanged) unless set."""

    weekday: tuple[int, ...] = EVERY_DAY  # Monday first
    growth_per_day: Decimal = Decimal(0)  # compounded from `growth_from` (a date ordinal) on, e.g. 0.02 = +2 % a day
    growth_from: int = 0
    steps: tuple[tuple[int, int], ...] = ()  # (first date ordinal, per mille from then on), later ones win
    quiet: frozenset[int] = field(default_factory=frozenset)  # date ordinals of holidays
    quiet_permille: int = 100  # of a usual day, on a holiday

    def permille(self, o: int) -> int:
        """The multiplier of date ordinal `o`, in per mille."""
        m = self.weekday[(o + 6) % 7]  # ordinal 1 (0001-01-01) is a Monday
        if self.growth_per_day and o > self.growth_from:
            m = int(
                m * (1 + self.growth_per_day) ** (o - self.growth_from)
            )  # set growth_from: from year 1 it overflows
        for first, step in self.steps:
            if o >= first:
                m = m * step // PERMILLE
        if o in self.quiet:
            m = m * self.quiet_permille // PERMILLE
        return m


@dataclass(frozen=True, slots=True)
class ShapedProject:
    """A project added by name with a calendar shape: its level, model, hours, noise and first day."""

    name: str
    usd: Decimal  # the full day before the shape's multiplier (and the weekday rhythm unless steady)
    shape: DayShape = DayShape()
    model: str = "gpt-4o-mini-2024-07-18"
    profile: Profile = FLAT
    steady: bool = True  # narrow noise and no built-in weekday rhythm; False: wide noise, quieter weekends
    first_day: dt.date | None = None  # None: spends from the start of the organization's history


def weekdays(monday_to_friday: int, weekend: int) -> tuple[int, ...]:
    """Weekday multipliers, Monday first: one per mille for the working days, one for Saturday and Sunday."""
    return (monday_to_friday,) * 5 + (weekend,) * 2


def with_first_day(spender_first_day: int, project: ShapedProject) -> int:
    """The first day a shaped project spends: its own, or the history's start if later."""
    if project.first_day is None:
        return spender_first_day
    return max(spender_first_day, project.first_day.toordinal())
