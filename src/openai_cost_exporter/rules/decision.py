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
from dataclasses import dataclass, field
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

_ZERO = Decimal(0)
#: The rules whose alerts are incidents that last across cycles and days.
RUNAWAY = "runaway"
SPIKE = "spike"
#: Days without its spike after which a spike incident ends: a whole week, so each kind of day (weekday, weekend)
#: has been seen without it; a lasting change's weekends lag its weekdays by up to a week.
QUIET_DAYS = 7


@dataclass(frozen=True, slots=True)
class Key:
    """What a notification is about: one (rule, subject, UTC day, level)."""

    rule: str
    subject_id: str
    day: dt.date
    level: str

    def params(self) -> tuple[str, str, str, str]:
        return (self.rule, self.subject_id, self.day.isoformat(), self.level)


@dataclass(frozen=True, slots=True)
class Incident:
    """A runaway or a spike of one subject: open from the day it fired until the day it stopped (a runaway) or
    QUIET_DAYS after the day it was last seen (a spike)."""

    opened: dt.date
    closed: dt.date | None = None
    seen: dt.date | None = None  # a spike: the last day it fired
    ratio: Decimal | None = None  # a spike: the highest ratio to the usual of the days before `seen` (None: new spend)
    peak: Decimal | None = None  # a spike: the highest ratio on `seen`


@dataclass(frozen=True, slots=True)
class AlertState:
    """What the decision remembers between cycles."""

    incidents: Mapping[str, Incident] = field(default_factory=dict)  # runaway incidents, by subject_id
    said: Mapping[Key, Decimal] = field(default_factory=dict)  # the value last notified, by message key
    spikes: Mapping[str, Incident] = field(default_factory=dict)  # spike incidents, by subject_id

    def oldest_day(self, day: dt.date) -> dt.date:
        """The oldest message day a decision on `day` may look up: the 1st of its month (the spend limit's messages
        are keyed by their month), or the day an open incident opened, if earlier."""
        open_incidents = [*self.incidents.values(), *self.spikes.values()]
        return min([day.replace(day=1), *(i.opened for i in open_incidents if i.closed is None)])


@dataclass(frozen=True, slots=True)
class Figures:
    """What a cycle saw: the billed figures (None when it has no fresh snapshot) and the estimates' runaway
    figures by subject_id (None without fresh estimates); each rule is judged only on what it has."""

    projects: Sequence[SpendFigures] | None = None
    organization: SpendFigures | None = None
    limits: Sequence[LimitFigures] = ()
    runaways: Mapping[str, RunawayFigures] | None = None


@dataclass(frozen=True, slots=True)
class Decision:
    """One message to send: the alert, its key, whether it escalates, and the value said before."""

    alert: Alert
    key: Key
    escalation: bool
    previous: Decimal | None


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
        judged = _without_spiking(figures.runaways, state, alerts, policy.escalation_factor)
        runaways, incidents = _runaways(policy, judged, incidents, day, names)
    held = {subject for subject, incident in incidents.items() if incident.closed in (None, day)}
    found = [*runaways, *fold_into_runaways(alerts, held)]
    decisions, said = decide_messages([a for a in found if a.rule != SPIKE], state.said, policy.escalation_factor, day)
    spikes = dict(state.spikes)
    if figures.projects is not None:
        spiking = [a for a in found if a.rule == SPIKE]
        found = [a for a in found if a.rule != SPIKE]
        spike_alerts, spike_decisions, said, spikes = _spikes(spiking, spikes, said, policy.escalation_factor, day)
        found, decisions = [*found, *spike_alerts], [*decisions, *spike_decisions]
    return Outcome(alerts=found, decisions=decisions, state=AlertState(incidents=incidents, said=said, spikes=spikes))


def _without_spiking(
    figures: Mapping[str, RunawayFigures], state: AlertState, alerts: Sequence[Alert], factor: Decimal
) -> dict[str, RunawayFigures]:
    """The runaway figures to judge: a project with an open spike incident (said already: a spike day's steady
    high rate, a lasting step up) opens no runaway unless its rate is `factor` x beyond the spike's highest ratio.
    The billed spike and the estimated rate are then one incident; a worse runaway on top of it is news."""
    spiking = {s: _highest(i.ratio, i.peak) for s, i in state.spikes.items()}
    for alert in alerts:
        if alert.rule == SPIKE:
            spiking[alert.subject_id] = _highest(spiking.get(alert.subject_id), alert.ratio)
    judged = {}
    for subject, runaway in figures.items():
        open_runaway = subject in state.incidents and state.incidents[subject].closed is None
        if subject not in spiking or open_runaway:
            judged[subject] = runaway
            continue
        reference = spiking[subject]  # None: a new project's "new spend", which said it
        ratio = runaway.rate / runaway.usual if runaway.usual > _ZERO else None
        if ratio is not None and reference is not None and ratio >= factor * reference:
            judged[subject] = runaway
    return judged


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


def message_due(last: Decimal | None, value: Decimal, factor: Decimal) -> bool | None:
    """The rule of no spam: a first message (False), an escalation (True: `value` reached `factor` x the value
    last notified), or no message (None)."""
    if last is None:
        return False
    if last > 0 and value >= factor * last:
        return True
    return None


def alert_key(alert: Alert, day: dt.date) -> Key:
    """The key of an alert's message: an incident's messages are keyed by the day it opened, whatever day it is."""
    return Key(alert.rule, alert.subject_id, alert.since or day, alert.level)


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


def _spikes(
    alerts: Sequence[Alert],
    incidents: Mapping[str, Incident],
    said: Mapping[Key, Decimal],
    factor: Decimal,
    day: dt.date,
) -> tuple[list[Alert], list[Decision], dict[Key, Decimal], dict[str, Incident]]:
    """The spike alerts as incidents (each keyed by the day its incident opened), the messages due (a new incident;
    an escalation when the ratio reaches `factor` x the highest ratio of its earlier days), what is said after them,
    and the incidents after this cycle (one that has not fired for QUIET_DAYS days ends).

    Only earlier days count for an escalation: today's billed figure lags (hours), so a steady spike's ratio
    climbs through its first day, which is not a doubling."""
    remembered, kept = dict(said), dict(incidents)
    found, decisions = [], []
    for fired in alerts:
        incident = kept.get(fired.subject_id) or Incident(day)
        alert = dataclasses.replace(fired, since=incident.opened)
        key = alert_key(alert, day)
        last = remembered.get(key)
        today_peak = incident.peak if incident.seen == day else None
        reference = incident.ratio if incident.seen in (None, day) else _highest(incident.ratio, incident.peak)
        escalation = False if last is None else _escalates(alert.ratio, reference, factor)
        if escalation is not None:
            decisions.append(Decision(alert, key, escalation, last))
            remembered[key] = alert.value
            reference = alert.ratio if escalation else reference
        peak = _highest(today_peak, alert.ratio)
        kept[alert.subject_id] = Incident(incident.opened, seen=day, ratio=reference, peak=peak)
        found.append(alert)
    firing = {alert.subject_id for alert in alerts}
    kept = {s: i for s, i in kept.items() if s in firing or (day - (i.seen or i.opened)).days <= QUIET_DAYS}
    return found, decisions, remembered, kept


def _escalates(ratio: Decimal | None, reference: Decimal | None, factor: Decimal) -> bool | None:
    """True when a spike's ratio reached `factor` x its reference (new spend has none: never), else None."""
    if ratio is not None and reference is not None and reference > 0 and ratio >= factor * reference:
        return True
    return None


def _highest(*ratios: Decimal | None) -> Decimal | None:
    known = [ratio for ratio in ratios if ratio is not None]
    return max(known) if known else None
