"""The pure alert decision: rules, runaway incidents, the spike folded into a runaway, no spam and escalations."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal

from openai_cost_exporter.rules import AlertPolicy, RunawayFigures, SpendFigures
from openai_cost_exporter.rules.decision import AlertState, Figures, Incident, Key, Outcome, decide

D = Decimal
DAY = dt.date(2026, 11, 25)
NEXT = DAY + dt.timedelta(days=1)
NAMES = {"proj_a": "Agent A", "proj_b": "Batch B"}
POLICY = AlertPolicy(organization=False)


def running(rate: str = "40", pid: str = "proj_a") -> dict[str, RunawayFigures]:
    return {pid: RunawayFigures(pid, NAMES[pid], D(rate), D(2))}


def quiet(pid: str = "proj_a") -> dict[str, RunawayFigures]:
    return {pid: RunawayFigures(pid, NAMES[pid], D(2), D(2))}


def spiking(pid: str = "proj_a") -> list[SpendFigures]:
    return [SpendFigures(pid, NAMES[pid], today=D(500), baseline=D(50), month_to_date=D(900), forecast=D(1000))]


def said(outcome: Outcome) -> list[tuple[str, str, str, bool]]:
    return [(d.alert.rule, d.alert.subject_id, d.alert.level, d.escalation) for d in outcome.decisions]


def test_a_runaway_opens_an_incident_says_it_once_and_its_end_once() -> None:
    """A runaway is one message while it lasts, across midnight, and one that it is over, keyed by its first day."""
    first = decide(Figures(runaways=running()), AlertState(), POLICY, DAY, NAMES)
    assert said(first) == [("runaway", "proj_a", "firing", False)]
    assert first.state.incidents == {"proj_a": Incident(DAY)}
    again = decide(Figures(runaways=running()), first.state, POLICY, NEXT, NAMES)
    assert said(again) == [] and again.alerts[0].since == DAY
    over = decide(Figures(runaways=quiet()), again.state, POLICY, NEXT, NAMES)
    assert said(over) == [("runaway", "proj_a", "resolved", False)]
    assert over.decisions[0].key == Key("runaway", "proj_a", DAY, "resolved")
    assert over.state.incidents == {"proj_a": Incident(DAY, NEXT)}
    later = decide(Figures(runaways=quiet()), over.state, POLICY, NEXT + dt.timedelta(days=1), NAMES)
    assert said(later) == [] and later.state.incidents == {}  # closed before that day: forgotten


def test_an_escalation_is_said_when_the_value_doubles() -> None:
    """A second message when the rate reaches the escalation factor x the rate said, none below it."""
    first = decide(Figures(runaways=running("40")), AlertState(), POLICY, DAY, NAMES)
    below = decide(Figures(runaways=running("79")), first.state, POLICY, DAY, NAMES)
    assert said(below) == []
    double = decide(Figures(runaways=running("80")), below.state, POLICY, DAY, NAMES)
    assert said(double) == [("runaway", "proj_a", "firing", True)]
    assert double.decisions[0].previous == D(40)


def test_the_spike_of_a_project_with_a_runaway_is_folded_into_it() -> None:
    """One incident, one message: a project's daily spike is not said while its runaway is open, nor later that
    day; another project's spike is."""
    projects = [*spiking("proj_a"), *spiking("proj_b")]
    outcome = decide(Figures(projects=projects, runaways=running()), AlertState(), POLICY, DAY, NAMES)
    assert sorted(said(outcome)) == [("runaway", "proj_a", "firing", False), ("spike", "proj_b", "firing", False)]
    ended = decide(Figures(runaways=quiet()), outcome.state, POLICY, DAY, NAMES)
    closing = decide(Figures(projects=projects, runaways=None), ended.state, POLICY, DAY, NAMES)
    assert said(closing) == []  # proj_a's spike is the echo of its runaway, closed today; proj_b's was said


def test_without_runaway_figures_the_incidents_stay_as_they_are() -> None:
    """A cycle without fresh estimates neither opens nor closes an incident."""
    state = AlertState(incidents={"proj_a": Incident(DAY)})
    outcome = decide(Figures(projects=[]), state, POLICY, NEXT, NAMES)
    assert outcome.state.incidents == state.incidents and outcome.decisions == []


def test_the_oldest_day_looked_up_is_the_month_start_or_an_older_open_incident() -> None:
    """What was said is looked up from the 1st of the month (the spend limit's messages are keyed by it), or from
    an open incident's first day when that is older; a closed incident does not count."""
    assert AlertState().oldest_day(NEXT) == dt.date(2026, 11, 1)
    older = AlertState(
        incidents={"proj_a": Incident(dt.date(2026, 10, 30)), "proj_b": Incident(dt.date(2026, 10, 2), DAY)}
    )
    assert older.oldest_day(NEXT) == dt.date(2026, 10, 30)
