"""The labelled calendar corpus of issue 20: organization histories of the simulated organization, each with the
incidents it holds, for scoring the alert decision (fake/replay.py replays them, fake/scorecard.py scores them).

A `Scenario` is a small organization (a few generated projects of the fake plus named, shaped ones), the period
that is scored, and its labels: `Incident`s (a spike day, a runaway window, the first day of a lasting step up)
that should be announced, and `Notice`s (a project that appears) that may be announced once. Everything else a
scenario sends is a false alarm. The scenarios start on different weekdays, and each scored period holds every
weekday and weekend day at least once (14 days), or 7 days for the young organizations.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from dataclasses import dataclass
from decimal import Decimal

from openai_cost_exporter.core.clock import FrozenClock
from openai_cost_exporter.fake.org import FakeOrg
from openai_cost_exporter.fake.plan import Plan
from openai_cost_exporter.fake.roster import Roster, build_roster
from openai_cost_exporter.fake.shapes import DayShape, ShapedProject, with_first_day
from openai_cost_exporter.fake.spend import NOISE_TABLE_SIZE
from openai_cost_exporter.fake.traffic import BUSINESS, FLAT, batch_profile

SPIKE = "spike"
RUNAWAY = "runaway"
STEP = "step"  # the first day of a lasting step up: a spike that day, ordinary from the next day on
#: The runaway factor at which the rule's ratio sits: such a runaway may go unannounced (not counted as missed).
RULE_RATIO = Decimal(3)


@dataclass(frozen=True, slots=True)
class Incident:
    """Something a team wants to hear about once: a project's spike day, runaway or step up, with its window."""

    project: str  # the shaped project's name
    kind: str  # SPIKE, RUNAWAY or STEP
    start: dt.datetime
    end: dt.datetime
    factor: Decimal

    @property
    def required(self) -> bool:
        """Whether missing it counts: a runaway at the rule's own ratio need not be caught."""
        return not (self.kind == RUNAWAY and self.factor <= RULE_RATIO)


@dataclass(frozen=True, slots=True)
class Notice:
    """A project that appears on `day`: one "new spend" message about it in its first week is not a false alarm."""

    project: str
    day: dt.date


@dataclass(frozen=True, slots=True)
class Scenario:
    """One labelled organization history."""

    name: str
    group: str  # "ordinary", "young", "change" or "incident": how the scorecard sums them up
    start: dt.date  # the first scored day (and the organization's "today" when it is generated)
    days: int  # scored days
    projects: tuple[ShapedProject, ...]
    incidents: tuple[Incident, ...] = ()
    notices: tuple[Notice, ...] = ()
    history_days: int = 42  # days of spend before `start` (the weekend baseline reads four weeks back)
    background: int = 4  # generated projects of the fake beside the shaped ones
    seed: int = 20

    @property
    def first_moment(self) -> dt.datetime:
        return dt.datetime.combine(self.start, dt.time(), dt.UTC)

    @property
    def end_moment(self) -> dt.datetime:
        return self.first_moment + dt.timedelta(days=self.days)

    def organization(self, clock: FrozenClock) -> tuple[FakeOrg, dict[str, str]]:
        """The organization (its clock set to the scenario's start) and the shaped projects' ids by name."""
        clock.current = self.first_moment
        plan = Plan(self.seed, self.start, self.history_days, 3)
        base = build_roster(
            plan, self.background, 0, spike=False, unattributed=True, rhythm=False, batch_peak_hour=2, runaway=False
        )
        projects, spenders, ids = list(base.projects), list(base.spenders), {}
        for shaped in self.projects:
            project, spender = plan.named(shaped.name, shaped.model, shaped.usd, shaped.profile)
            first = with_first_day(spender.first_day, shaped)
            spender = dataclasses.replace(spender, steady=shaped.steady, first_day=first, shape=shaped.shape)
            projects.append(project)
            spenders.append(spender)
            ids[shaped.name] = project.id
        roster = Roster(projects, spenders, dict(base.ids))
        org = FakeOrg(seed=self.seed, clock=clock, roster=roster, noise=plan.noise_tables(NOISE_TABLE_SIZE))
        for incident in self.incidents:
            label(org, ids[incident.project], incident)
        return org, ids

    def shortened(self, days: int) -> Scenario:
        """The same history scored over its first `days` days only, with the labels that start in them."""
        end = self.first_moment + dt.timedelta(days=days)
        incidents = tuple(i for i in self.incidents if i.start < end)
        notices = tuple(n for n in self.notices if n.day < end.date())
        return dataclasses.replace(self, days=days, incidents=incidents, notices=notices)


def label(org: FakeOrg, project_id: str, incident: Incident) -> None:
    """Make the incident happen in the organization: a spike multiplies its whole day, a runaway its rate for the
    window. (A step is part of the project's shape already.)"""
    if incident.kind == SPIKE:
        org.spend.scale(incident.start.date().toordinal(), project_id, incident.factor)
    elif incident.kind == RUNAWAY:
        org.start_runaway(project_id, incident.factor, incident.start)
        org.stop_runaway(project_id, incident.end)


# ---- the projects the scenarios are made of ------------------------------------------------------------------

#: Weekday multipliers, Monday first.
WEEKDAY_HEAVY = (1000, 1000, 1000, 1000, 1000, 250, 200)
WEEKEND_HEAVY = (1000, 1000, 1000, 1000, 1000, 2600, 2400)
NO_WEEKEND = (1000, 1000, 1000, 1000, 1000, 0, 0)


def palette() -> tuple[ShapedProject, ...]:
    """The ordinary projects most scenarios share: each calendar shape once, big and small, batch peaks too."""
    return (
        ShapedProject("Office Copilot", Decimal(80), DayShape(weekday=WEEKDAY_HEAVY), profile=BUSINESS),
        ShapedProject("Weekend Games", Decimal(40), DayShape(weekday=WEEKEND_HEAVY), profile=BUSINESS),
        ShapedProject("Payroll Helper", Decimal(30), DayShape(weekday=NO_WEEKEND), profile=BUSINESS),
        ShapedProject("Main Search", Decimal(1500), model="gpt-4.1-2025-04-14"),
        ShapedProject("Agent Platform", Decimal(120), model="o3-2025-04-16"),
        ShapedProject("Tiny Noisy", Decimal(3), steady=False, profile=BUSINESS),
        ShapedProject("Night Batch", Decimal(300), profile=batch_profile(2)),
        ShapedProject("Late Batch", Decimal(150), profile=batch_profile(23)),
    )


def project(name: str) -> ShapedProject:
    """One project of the palette by name."""
    return next(p for p in palette() if p.name == name)


def flat(name: str, usd: Decimal, **changes: object) -> ShapedProject:
    """A flat-hours project of its own."""
    return dataclasses.replace(ShapedProject(name, usd, profile=FLAT), **changes)  # type: ignore[arg-type]
