"""The scenarios of the labelled calendar corpus (fake/corpus.py): what each organization is and what it holds.

Ordinary histories (every calendar shape, growth, a holiday, projects that appear on a weekday and on a
Saturday), young organizations (1, 3, 9 and 20 days of history), a lasting step up and a step down, and incidents
on weekdays and weekend days: spike days of 2.5x to 4x, runaways of 3x, 4x, 5x, 10x and 20x at different hours,
just before and just after midnight UTC included. Each starts on another weekday.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from decimal import Decimal

from openai_cost_exporter.fake.corpus import RUNAWAY, SPIKE, STEP, Incident, Notice, Scenario, flat, palette
from openai_cost_exporter.fake.shapes import DayShape, ShapedProject
from openai_cost_exporter.fake.traffic import BUSINESS

MONDAY = dt.date(2026, 10, 5)
WEEKS = 14  # scored days of an established organization: every weekday and weekend day twice
YOUNG_DAYS = 7


def day(offset: int) -> dt.date:
    """The day `offset` days after MONDAY (a Monday)."""
    return MONDAY + dt.timedelta(days=offset)


def at(offset: int, clock: str) -> dt.datetime:
    """A moment: `offset` days after MONDAY, at "HH:MM" UTC."""
    hour, minute = (int(part) for part in clock.split(":"))
    return dt.datetime.combine(day(offset), dt.time(hour, minute), dt.UTC)


def spike(project: str, offset: int, factor: str) -> Incident:
    """A whole day at `factor` times the project's usual."""
    start = at(offset, "00:00")
    return Incident(project, SPIKE, start, start + dt.timedelta(days=1), Decimal(factor))


def runaway(project: str, start: dt.datetime, minutes: int, factor: str) -> Incident:
    """The project's rate at `factor` times its usual for `minutes`."""
    return Incident(project, RUNAWAY, start, start + dt.timedelta(minutes=minutes), Decimal(factor))


def ordinary() -> list[Scenario]:
    """Histories with nothing to announce but projects that appear (at most once each)."""
    origin = day(-40).toordinal()  # the growth scenario's history starts then
    growing = (
        flat("Growing Agent", Decimal(40), shape=DayShape(growth_per_day=Decimal("0.02"), growth_from=origin)),
        dataclasses.replace(
            flat("Growing Tool", Decimal(8), shape=DayShape(growth_per_day=Decimal("0.03"), growth_from=origin)),
            profile=BUSINESS,
        ),
    )
    holiday = frozenset({dt.date(2026, 12, 25).toordinal()})
    quiet = tuple(dataclasses.replace(p, shape=dataclasses.replace(p.shape, quiet=holiday)) for p in palette())
    new = (
        ShapedProject("New Weekday App", Decimal(50), first_day=day(8), profile=BUSINESS),
        flat("New Weekend Bot", Decimal(25), first_day=day(12)),
    )
    return [
        Scenario("calendar", "ordinary", day(0), WEEKS, palette()),
        Scenario("growth", "ordinary", day(2), WEEKS, palette()[:4] + growing),
        Scenario("holiday", "ordinary", dt.date(2026, 12, 15), WEEKS, quiet),
        Scenario(
            "new-projects", "ordinary", day(4), WEEKS, palette()[:4] + new,
            notices=(Notice("New Weekday App", day(8)), Notice("New Weekend Bot", day(12))),
        ),
    ]  # fmt: skip


def young() -> list[Scenario]:
    """Organizations whose history began 1, 3 (on a Friday), 9 and 20 days before the scored week."""
    starts = (
        (1, dt.date(2026, 11, 25)),
        (3, dt.date(2026, 11, 30)),
        (9, dt.date(2026, 11, 28)),
        (20, dt.date(2026, 11, 30)),
    )
    return [Scenario(f"young-{n}d", "young", start, YOUNG_DAYS, palette(), history_days=n) for n, start in starts]


def changes() -> list[Scenario]:
    """A project that triples for good (announced on its first day only) and one that drops to a third."""
    up = flat("Step Up", Decimal(60), shape=DayShape(steps=((day(10).toordinal(), 3000),)))
    down = ShapedProject("Step Down", Decimal(200), DayShape(steps=((day(12).toordinal(), 330),)), profile=BUSINESS)
    first = at(10, "00:00")
    step = Incident("Step Up", STEP, first, first + dt.timedelta(days=1), Decimal(3))
    return [Scenario("lasting-change", "change", day(3), WEEKS, (*palette()[:4], up, down), incidents=(step,))]


def incidents() -> list[Scenario]:
    """Spike days and runaways, on weekdays and weekend days, at different hours, around midnight too."""
    spikes = (
        spike("Agent Platform", 8, "2.5"),  # a Tuesday
        spike("Main Search", 10, "4"),  # a Thursday
        spike("Weekend Games", 12, "3"),  # a Saturday
        spike("Office Copilot", 13, "4"),  # a Sunday
        spike("Payroll Helper", 16, "3"),  # a Wednesday
    )
    runaways = (
        runaway("Main Search", at(8, "10:17"), 120, "10"),  # Tuesday morning
        runaway("Agent Platform", at(9, "14:40"), 120, "5"),
        runaway("Agent Platform", at(10, "03:05"), 150, "4"),  # at night
        runaway("Main Search", at(11, "12:00"), 120, "3"),  # the rule's ratio: need not be caught
        runaway("Agent Platform", at(12, "09:30"), 60, "20"),  # a Saturday
        runaway("Main Search", at(13, "19:20"), 120, "5"),  # a Sunday evening
        runaway("Night Batch", at(15, "02:10"), 60, "10"),  # in its batch peak
    )
    midnight = (
        runaway("Main Search", at(12, "23:50"), 120, "10"),  # Saturday to Sunday
        runaway("Agent Platform", at(14, "00:10"), 120, "5"),  # just after midnight, a Monday
        runaway("Agent Platform", at(16, "23:58"), 50, "20"),  # Wednesday to Thursday
        runaway("Main Search", at(17, "23:40"), 120, "4"),  # Thursday to Friday
    )
    return [
        Scenario("spike-days", "incident", day(6), WEEKS, palette(), incidents=spikes),
        Scenario("runaways", "incident", day(7), WEEKS, palette(), incidents=runaways),
        Scenario("runaways-midnight", "incident", day(5), WEEKS, palette(), incidents=midnight),
    ]


def corpus() -> list[Scenario]:
    """Every scenario, in the scorecard's order."""
    return [*ordinary(), *young(), *changes(), *incidents()]
