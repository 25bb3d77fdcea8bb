"""The alert decision, pure: what a cycle saw and what was already said in; the alerts, the messages to send and
what to remember out.

`decide` is the one place that turns figures into messages: the rules, the runaway incidents (one incident from
the cycle it fires until the one it stops, across midnight too, which then says it is over), the folding of a
project's spike into its runaway, and the no-spam memory with its escalations. The live cycle
(alerts/alerter.py) loads the state from the state file, calls it and stores what it returns in one
transaction; `backtest` replays the same function over the stored history with the state in memory. Nothing here
reads a clock, the API or a file.

No spam: at most one message per key (rule, subject, UTC day, level; an incident's messages are keyed by the day it
opened), plus one more each time the value reaches `escalation_factor` x the value last notified.

A spike is an incident too, across days: the first cycle that sees it says it; while the project keeps spiking on
the next days (a lasting change, before the usual day catches up with it; a new project's first days of spend)
nothing more is said, unless its ratio to the usual reaches `escalation_factor` x the highest ratio of its earlier
days. It ends quietly after QUIET_DAYS days without the spike: by then the change is the usual, or it is over.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from decimal import Decimal

from openai_cost_exporter.rules import (
    Alert,
    AlertPolicy,
    LimitFigures,
    RunawayFigures,
    SpendFigures,
    evaluate,
    evaluate_runaways,
    evaluate_spend_limits,
    fold_into_runaways,
    project_limits,
    runaway_resolved,
)
from openai_cost_exporter.rules.incidents import QUIET_DAYS, organization_beyond, runaway_messages, without_spiking
from openai_cost_exporter.rules.incidents import spikes as spikes_after
from openai_cost_exporter.rules.state import RUNAWAY, SPIKE, AlertState, Decision, Incident, Key, alert_key, message_due

#: The decision's public names (the state's data classes live in rules/state.py).
__all__ = [
    "QUIET_DAYS", "RUNAWAY", "SPIKE", "AlertState", "Decision", "Figures", "Incident", "Key", "Outcome",
    "alert_key", "decide", "decide_messages", "message_due",
]  # fmt: skip

_ZERO = Decimal(0)


@dataclass(frozen=True, slots=True)
class Figures:
    """What a cycle saw: the billed figures (None when it has no fresh snapshot) and the estimates' runaway
    figures by subject_id (None without fresh estimates); each rule is judged only on what it has."""

    projects: Sequence[SpendFigures] | None = None
    organization: SpendFigures | None = None
    limits: Sequence[LimitFigures] = ()
    runaways: Mapping[str, RunawayFigures] | None = None


@dataclass(frozen=True, slots=True)
class Outcome:
    """Every alert the figures breach (the spend page shows them), the messages due, and the state to keep."""

    alerts: list[Alert]
    decisions: list[Decision]
    state: AlertState


def decide(figures: Figures, state: AlertState, policy: AlertPolicy, day: dt.date, names: Mapping[str, str]) -> Outcome:
    """The alerts of a cycle on `day` and the messages they need, from `state`; `names` names the projects whose
    runaway stopped without figures of their own."""
    alerts: list[Alert] = []
    if figures.projects is not None:
        alerts = evaluate(policy, figures.projects, figures.organization)
        alerts += evaluate_spend_limits(policy, figures.limits, day.replace(day=1))
    incidents = dict(state.incidents)
    runaways: list[Alert] = []
    if figures.runaways is not None:
        judged = without_spiking(figures.runaways, state, alerts, policy.escalation_factor, day)
        runaways, incidents = _runaways(policy, judged, incidents, day, names)
    held = {subject for subject, incident in incidents.items() if incident.closed in (None, day)}
    alerts = fold_into_runaways(alerts, held)
    if figures.projects is not None and figures.organization is not None:
        announced = held | set(state.spikes) | {a.subject_id for a in alerts if a.rule == SPIKE}
        alerts = organization_beyond(alerts, figures.projects, figures.organization, announced, policy)
    factor, found = policy.escalation_factor, [*runaways, *alerts]
    firing = [a for a in found if a.rule == RUNAWAY and a.level == "firing"]
    running, said, incidents = runaway_messages(firing, incidents, state.said, factor, day)
    plain = [a for a in found if a.rule != SPIKE and a not in firing]
    decisions, said = decide_messages(plain, said, factor, day)
    decisions = [*running, *decisions]
    spikes = dict(state.spikes)
    if figures.projects is not None:
        spiking = [a for a in found if a.rule == SPIKE]
        found = [a for a in found if a.rule != SPIKE]
        spike_alerts, spike_decisions, said, spikes = spikes_after(spiking, spikes, said, factor, day)
        found, decisions = [*found, *spike_alerts], [*decisions, *spike_decisions]
    return Outcome(alerts=found, decisions=decisions, state=AlertState(incidents=incidents, said=said, spikes=spikes))


def decide_messages(
    alerts: Sequence[Alert], said: Mapping[Key, Decimal], factor: Decimal, day: dt.date
) -> tuple[list[Decision], dict[Key, Decimal]]:
    """The messages `alerts` need on `day` given what was `said` (first ones and escalations), and what is said
    after them."""
    remembered = dict(said)
    decisions = []
    for alert in alerts:
        key = alert_key(alert, day)
        last = remembered.get(key)
        escalation = message_due(last, alert.value, factor)
        if escalation is not None:
            decisions.append(Decision(alert, key, escalation, last))
            remembered[key] = alert.value
    return decisions, remembered


def _runaways(
    policy: AlertPolicy,
    figures: Mapping[str, RunawayFigures],
    incidents: dict[str, Incident],
    day: dt.date,
    names: Mapping[str, str],
) -> tuple[list[Alert], dict[str, Incident]]:
    """The runaway alerts and the incidents after them: a newly firing project opens one, one that stopped closes
    it (and gets the message that it is over), and an incident closed before `day` is forgotten."""
    firing = evaluate_runaways(policy, list(figures.values()))
    subjects = {alert.subject_id for alert in firing}
    for subject in subjects:
        if subject not in incidents or incidents[subject].closed is not None:
            incidents[subject] = Incident(day)
    closed = {s: i.opened for s, i in incidents.items() if i.closed is None and s not in subjects}
    for subject, opened in closed.items():
        incidents[subject] = Incident(opened, day)
    incidents = {s: i for s, i in incidents.items() if i.closed is None or i.closed >= day}
    over = [
        runaway_resolved(
            figures.get(pid) or RunawayFigures(pid, names.get(pid, pid), _ZERO, _ZERO),
            project_limits(policy, pid, names.get(pid, pid)),
            opened,
        )
        for pid, opened in sorted(closed.items())
    ]
    since = {s: i.opened for s, i in incidents.items() if i.closed is None}
    return [dataclasses.replace(a, since=since.get(a.subject_id, day)) for a in firing] + over, incidents
