"""The alert scorecard's targets (issue 20) on a pinned subset of the labelled corpus (fake/scenarios.py).

The whole corpus takes minutes (bench/alert_quality.py prints its scorecard, every hour); this subset keeps each
shape and kind of incident at a fraction of it: the calendar scenario's first week every 2 hours; the 1-, 3- (begun
on a Friday) and 9-day-old organizations' first 3 days every hour; the spike days' first week every 3 hours (2.5x
Tuesday, 4x Thursday, 3x Saturday); the runaways' first 4 days every 3 hours (10x, 5x, 4x, and 3x, which need not be
caught) and the midnight runaways' two weeks every 12 hours; round each runaway, every minute for 20 minutes from
its start, then every 5 until 3 hours (fake/replay.py `moments`).
"""

from __future__ import annotations

import datetime as dt
from functools import cache

import pytest

from openai_cost_exporter.fake.corpus import RUNAWAY, Scenario
from openai_cost_exporter.fake.scenarios import corpus
from openai_cost_exporter.fake.scorecard import IncidentScore, ScenarioScore, new_spend, replay_scenario
from openai_cost_exporter.rules import AlertPolicy

#: Scenario -> (scored days, minutes between the scored moments).
SUBSET = {
    "calendar": (7, 120),
    "young-1d": (3, 60),
    "young-3d": (3, 60),
    "young-9d": (3, 60),
    "spike-days": (7, 180),
    "runaways": (4, 180),
    "runaways-midnight": (14, 720),
}
ORDINARY = ("calendar", "young-1d", "young-3d", "young-9d")
INCIDENTS = ("spike-days", "runaways", "runaways-midnight")
#: Runaway factor -> minutes within which it must be announced (a 3x runaway sits at the rule's ratio).
DELAY_TARGETS = ((10, 6), (5, 10), (4, 13))


@cache
def scored(name: str) -> ScenarioScore:
    days, minutes = SUBSET[name]
    scenario: Scenario = next(s for s in corpus() if s.name == name).shortened(days)
    return replay_scenario(scenario, AlertPolicy(), every=dt.timedelta(minutes=minutes))[0]


def _describe(messages: list[object]) -> str:
    return "\n".join(map(str, messages))


@pytest.mark.parametrize("name", ORDINARY)
def test_an_ordinary_history_sends_no_false_alarm(name: str) -> None:
    """An ordinary history (every calendar shape; a young organization) sends nothing at any hour of any day."""
    score = scored(name)
    assert not score.false_alarms, _describe(list(score.false_alarms))


@pytest.mark.parametrize("name", ["young-1d", "young-3d", "young-9d"])
def test_a_young_organization_sends_no_new_spend_for_a_project_that_spent_every_day(name: str) -> None:
    """A project that spent on every day of a young organization's history is not "new spend"."""
    assert not new_spend(scored(name).sent), _describe(list(new_spend(scored(name).sent)))


@pytest.mark.parametrize("name", INCIDENTS)
def test_every_incident_is_caught(name: str) -> None:
    """Every labelled spike day and runaway (but those at the rule's own ratio) gets a message."""
    score = scored(name)
    assert score.incidents, "the subset holds incidents"
    assert not score.missed, score.missed


@pytest.mark.parametrize("name", INCIDENTS)
def test_an_incident_is_one_message_plus_escalations(name: str) -> None:
    """An incident sends one message, plus its escalations and the one that says it is over, and no false alarm."""
    score = scored(name)
    extra = [(i.incident, i.messages) for i in score.incidents if i.extra > 0]
    assert not extra, _describe(list(extra))
    assert not score.false_alarms, _describe(list(score.false_alarms))


def _target(incident: IncidentScore) -> int | None:
    return next((minutes for factor, minutes in DELAY_TARGETS if incident.incident.factor >= factor), None)


@pytest.mark.parametrize("name", ["runaways", "runaways-midnight"])
def test_a_runaway_is_announced_within_its_target(name: str) -> None:
    """A 10x (or faster) runaway is announced within 6 minutes, 5x within 10, 4x within 13, wherever it starts."""
    late = []
    runaways = [i for i in scored(name).incidents if i.incident.kind == RUNAWAY]
    assert runaways
    for incident in runaways:
        target = _target(incident)
        delay = incident.delay_minutes
        if target is not None and (delay is None or delay > target):
            late.append((incident.incident, delay, target))
    assert not late, _describe(list(late))
