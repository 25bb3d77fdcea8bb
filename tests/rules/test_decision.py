"""The pure alert decision: rules, runaway incidents, the spike folded into a runaway, no spam and escalations."""

from __future__ import annotations

import dataclasses
import datetime as dt
from decimal import Decimal
from typing import Any

import pytest

from openai_cost_exporter.rules import AlertPolicy, ProjectPolicy, RunawayFigures, SpendFigures
from openai_cost_exporter.rules.decision import AlertState, Figures, Incident, Key, Outcome, decide
from tests.rules.test_rules import CASES

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
    assert first.state.incidents == {"proj_a": Incident(DAY, peak=D(20))}  # 20x its usual rate
    again = decide(Figures(runaways=running()), first.state, POLICY, NEXT, NAMES)
    assert said(again) == [] and again.alerts[0].since == DAY
    over = decide(Figures(runaways=quiet()), again.state, POLICY, NEXT, NAMES)
    assert said(over) == [("runaway", "proj_a", "resolved", False)]
    assert over.decisions[0].key == Key("runaway", "proj_a", DAY, "resolved")
    assert over.state.incidents == {"proj_a": Incident(DAY, NEXT)}
    later = decide(Figures(runaways=quiet()), over.state, POLICY, NEXT + dt.timedelta(days=1), NAMES)
    assert said(later) == [] and later.state.incidents == {}  # closed before that day: forgotten


def test_a_runaway_escalates_when_its_ratio_jumps_to_twice_its_highest() -> None:
    """A second message when the ratio to the usual jumps to the escalation factor x the highest it has had; a
    climb (a window filling up, a morning ramp) moves the highest along and is no doubling."""
    first = decide(Figures(runaways=running("40")), AlertState(), POLICY, DAY, NAMES)  # 20x
    climbing = decide(Figures(runaways=running("70")), first.state, POLICY, DAY, NAMES)  # 35x
    assert said(climbing) == [] and climbing.state.incidents["proj_a"].peak == D(35)
    below = decide(Figures(runaways=running("139")), climbing.state, POLICY, DAY, NAMES)
    assert said(below) == []
    jump = decide(Figures(runaways=running("300")), climbing.state, POLICY, DAY, NAMES)  # 150x: over 2 x 35x
    assert said(jump) == [("runaway", "proj_a", "firing", True)]
    assert jump.decisions[0].previous == D(40)


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


def day_of(today: str, baseline: str, pid: str = "proj_a") -> list[SpendFigures]:
    return [SpendFigures(pid, NAMES[pid], today=D(today), baseline=D(baseline), month_to_date=D(0), forecast=D(0))]


def replay(days: list[tuple[str, str]], state: AlertState | None = None) -> tuple[list[list[Any]], AlertState]:
    """Each (today, baseline) judged on its own day from DAY on; the messages of each day and the state after."""
    state = state or AlertState()
    messages = []
    for n, (today, usual) in enumerate(days):
        outcome = decide(Figures(projects=day_of(today, usual)), state, POLICY, DAY + dt.timedelta(days=n), NAMES)
        messages.append(said(outcome))
        state = outcome.state
    return messages, state


def test_a_lasting_change_is_one_spike_incident_not_a_message_a_day() -> None:
    """A project that steps up to 5x and stays there is said on the first day only, while its usual day catches
    up; the incident ends quietly a week after the last day it spiked."""
    lasting = [("500", "100")] * 4 + [("500", "500")] * 9
    messages, state = replay(lasting)
    assert messages[0] == [("spike", "proj_a", "firing", False)]
    assert all(m == [] for m in messages[1:])
    assert state.spikes == {}  # day 3 was the last spike; day 11 is the 8th without it
    _, before_end = replay(lasting[:11])
    assert before_end.spikes == {"proj_a": Incident(DAY, seen=DAY + dt.timedelta(days=3), ratio=D(5), peak=D(5))}


def test_a_spike_incident_escalates_when_its_ratio_doubles_on_a_later_day() -> None:
    """The next days of an open spike say nothing unless the ratio to the usual reaches twice the highest ratio of
    the incident's earlier days (its first day's climb, as the billed figure catches up, is no doubling); the
    escalation is keyed by the day the incident opened."""
    messages, state = replay([("300", "100"), ("700", "100"), ("1300", "100")])
    assert messages == [[("spike", "proj_a", "firing", False)], [("spike", "proj_a", "firing", True)], []]
    assert state.spikes["proj_a"] == Incident(DAY, seen=DAY + dt.timedelta(days=2), ratio=D(7), peak=D(13))
    assert set(state.said) == {Key("spike", "proj_a", DAY, "firing")}
    climbing = [day_of("160", "100"), day_of("400", "100")]  # the same day: 1.6x in the morning, 4x by evening
    state = AlertState()
    for figures in climbing:
        outcome = decide(Figures(projects=figures), state, POLICY, DAY, NAMES)
        state = outcome.state
    assert said(outcome) == [] and state.spikes["proj_a"].peak == D(4)


def test_a_new_project_first_days_of_spend_are_one_incident() -> None:
    """A new project's "new spend" (no usual day) is said once, not on each of its first days."""
    messages, state = replay([("40", "0")] * 5)
    assert messages == [[("spike", "proj_a", "firing", False)], [], [], [], []]
    assert state.spikes["proj_a"] == Incident(DAY, seen=DAY + dt.timedelta(days=4), ratio=None, peak=None)


def test_a_spike_after_a_quiet_week_is_a_new_incident() -> None:
    """Once the incident ended (a week without the spike), the next spike is said again, keyed by its own day."""
    messages, state = replay([("300", "100")] + [("100", "100")] * 8 + [("300", "100")])
    assert messages[0] == messages[9] == [("spike", "proj_a", "firing", False)]
    assert state.spikes["proj_a"].opened == DAY + dt.timedelta(days=9)


def test_a_cycle_without_billed_figures_keeps_the_spike_incidents() -> None:
    """Only fresh billed figures judge a spike: a cycle without them neither ends nor changes an incident."""
    state = AlertState(spikes={"proj_a": Incident(DAY - dt.timedelta(days=30), seen=DAY - dt.timedelta(days=30))})
    outcome = decide(Figures(runaways=quiet()), state, POLICY, DAY, NAMES)
    assert outcome.state.spikes == state.spikes


@pytest.mark.parametrize("case", CASES["spike_incident"], ids=lambda c: c["name"])
def test_spike_incident_cases(case: dict[str, Any]) -> None:
    """The days of a spike incident send messages exactly on the days of the shared case table."""
    messages, _ = replay([(str(today), str(usual)) for today, usual in case["days"]])
    assert [n for n, sent in enumerate(messages) if sent] == case["said"]


def test_a_spiking_project_opens_no_runaway_unless_it_is_twice_as_far_beyond() -> None:
    """A project spiking today or yesterday (a spike day's high rate, a lasting step up) gets no runaway message for
    the same change; a runaway at twice the spike's highest ratio or more is news, one already open goes on, and a
    spike last seen two days ago holds nothing back; "new spend" holds back only a runaway with no usual rate."""
    state = AlertState(spikes={"proj_a": Incident(DAY, seen=DAY, peak=D(4))})
    same = {"proj_a": RunawayFigures("proj_a", "Agent A", D(40), D(10))}  # 4x its usual rate
    assert said(decide(Figures(runaways=same), state, POLICY, DAY, NAMES)) == []
    worse = {"proj_a": RunawayFigures("proj_a", "Agent A", D(80), D(10))}  # 8x: twice the spike's 4x
    assert said(decide(Figures(runaways=worse), state, POLICY, DAY, NAMES)) == [("runaway", "proj_a", "firing", False)]
    running_state = AlertState(incidents={"proj_a": Incident(DAY)}, spikes=state.spikes)
    going_on = decide(Figures(runaways=same), running_state, POLICY, DAY, NAMES)
    assert going_on.state.incidents == {"proj_a": Incident(DAY, peak=D(4))}
    new_spend = AlertState(spikes={"proj_a": Incident(DAY, seen=DAY)})
    no_usual = {"proj_a": RunawayFigures("proj_a", "Agent A", D(80), D(0))}
    assert said(decide(Figures(runaways=no_usual), new_spend, POLICY, DAY, NAMES)) == []  # "new spend" said it
    assert said(decide(Figures(runaways=worse), new_spend, POLICY, DAY, NAMES)) == [
        ("runaway", "proj_a", "firing", False)
    ]
    days_ago = AlertState(
        spikes={"proj_a": Incident(DAY - dt.timedelta(days=3), seen=DAY - dt.timedelta(days=2), peak=D(4))}
    )
    assert said(decide(Figures(runaways=same), days_ago, POLICY, DAY, NAMES)) == [
        ("runaway", "proj_a", "firing", False)
    ]
    other = {"proj_b": RunawayFigures("proj_b", "Batch B", D(40), D(2))}
    assert said(decide(Figures(runaways=other), state, POLICY, DAY, NAMES)) == [("runaway", "proj_b", "firing", False)]


@pytest.mark.parametrize("case", CASES["runaway_during_spike"], ids=lambda c: c["name"])
def test_runaway_during_spike_cases(case: dict[str, Any]) -> None:
    """A runaway of a project with an open spike incident fires exactly on the shared cases of the table."""
    peak = case["spike_peak"]
    spikes = {} if peak == "none" else {"proj_a": Incident(DAY, seen=DAY, peak=None if peak is None else D(peak))}
    runaway = {"proj_a": RunawayFigures("proj_a", "Agent A", D(case["rate"]), D(case["usual"]))}
    outcome = decide(Figures(runaways=runaway), AlertState(spikes=spikes), POLICY, DAY, NAMES)
    assert bool(said(outcome)) == case["fires"]


def test_the_organization_spike_of_one_announced_project_is_not_a_second_message() -> None:
    """One project's spike is its message; the organization's total spikes with it, but without that project it
    does not, so nothing more is said. Two projects each a little up, none alone a spike, do make one."""
    org = SpendFigures("organization", "Organization", today=D(600), baseline=D(150), month_to_date=D(0), forecast=D(0))
    quiet_b = SpendFigures("proj_b", "Batch B", today=D(100), baseline=D(100), month_to_date=D(0), forecast=D(0))
    policy = AlertPolicy()
    one = decide(Figures(projects=[*spiking("proj_a"), quiet_b], organization=org), AlertState(), policy, DAY, NAMES)
    assert said(one) == [("spike", "proj_a", "firing", False)]
    both_up = [
        SpendFigures(pid, NAMES[pid], today=D(140), baseline=D(100), month_to_date=D(0), forecast=D(0), spread=D(20))
        for pid in ("proj_a", "proj_b")
    ]
    total = dataclasses.replace(org, today=D(280), baseline=D(150))
    several = decide(Figures(projects=both_up, organization=total), AlertState(), policy, DAY, NAMES)
    assert said(several) == [("spike", "organization", "firing", False)]


@pytest.mark.parametrize("case", CASES["runaway_escalation"], ids=lambda c: c["name"])
def test_runaway_escalation_cases(case: dict[str, Any]) -> None:
    """A runaway's cycles send messages exactly on the cycles of the shared case table."""
    state, sent = AlertState(), []
    for n, ratio in enumerate(case["ratios"]):
        outcome = decide(Figures(runaways=running(str(D(ratio) * 2))), state, POLICY, DAY, NAMES)  # usual 2
        state = outcome.state
        sent += [n] * len(outcome.decisions)
    assert sent == case["said"]


@pytest.mark.parametrize("case", CASES["organization_spike_beyond"], ids=lambda c: c["name"])
def test_organization_spike_beyond_cases(case: dict[str, Any]) -> None:
    """The organization's spike is said exactly on the shared cases: not when announced projects explain it."""
    projects = [
        SpendFigures(pid, NAMES[pid], D(today), D(usual), D(0), D(0), D(spread))
        for pid, (today, usual, spread) in zip(("proj_a", "proj_b"), case["projects"], strict=True)
    ]
    today, usual = sum((p.today for p in projects), D(0)), sum((p.baseline for p in projects), D(0))
    total = SpendFigures("organization", "Organization", today, usual, D(0), D(0))
    outcome = decide(Figures(projects=projects, organization=total), AlertState(), AlertPolicy(), DAY, NAMES)
    assert (("spike", "organization", "firing", False) in said(outcome)) == case["fires"]


def test_a_muted_project_spike_is_no_organization_message() -> None:
    """A muted project's spike is not said, and does not come back as the organization's spike either."""
    org = SpendFigures("organization", "Organization", today=D(600), baseline=D(150), month_to_date=D(0), forecast=D(0))
    quiet_b = SpendFigures("proj_b", "Batch B", today=D(100), baseline=D(100), month_to_date=D(0), forecast=D(0))
    muted = AlertPolicy(projects={"proj_a": ProjectPolicy(mute=True)})
    outcome = decide(Figures(projects=[*spiking("proj_a"), quiet_b], organization=org), AlertState(), muted, DAY, NAMES)
    assert said(outcome) == []
