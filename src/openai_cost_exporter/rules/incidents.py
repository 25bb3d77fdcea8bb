"""Incidents across cycles and days (pure): a spike said once while it lasts, a runaway escalated on its ratio,
and a spiking project's runaway held as the same change (rules/decision.py calls these)."""

from __future__ import annotations

import dataclasses
import datetime as dt
from collections.abc import Mapping, Sequence
from decimal import Decimal

from openai_cost_exporter.rules import (
    ORGANIZATION,
    Alert,
    AlertPolicy,
    RunawayFigures,
    SpendFigures,
    spike_alert,
)
from openai_cost_exporter.rules.state import SPIKE, AlertState, Decision, Incident, Key, alert_key

_ZERO = Decimal(0)
#: Days without its spike after which a spike incident ends: a whole week, so each kind of day (weekday, weekend)
#: has been seen without it; a lasting change's weekends lag its weekdays by up to a week.
QUIET_DAYS = 7


def without_spiking(
    figures: Mapping[str, RunawayFigures], state: AlertState, alerts: Sequence[Alert], factor: Decimal, day: dt.date
) -> dict[str, RunawayFigures]:
    """The runaway figures to judge: a project spiking today or yesterday (said already: a spike day's steady high
    rate, a lasting step up and its next night, before today's billed figure catches up) opens no runaway unless
    its rate is `factor` x beyond the spike's highest ratio. The billed spike and the estimated rate are then one
    incident; a worse runaway on top of it is news, and so is any runaway once the spike is a day old. A new
    project's "new spend" holds back only a runaway with no usual rate either."""
    recent = {day, day - dt.timedelta(days=1)}
    spiking = {s: _highest(i.ratio, i.peak) for s, i in state.spikes.items() if i.seen in recent}
    for alert in alerts:
        if alert.rule == SPIKE:
            spiking[alert.subject_id] = _highest(spiking.get(alert.subject_id), alert.ratio)
    judged = {}
    for subject, runaway in figures.items():
        open_runaway = subject in state.incidents and state.incidents[subject].closed is None
        ratio = runaway.rate / runaway.usual if runaway.usual > _ZERO else None
        reference = spiking.get(subject)
        if subject not in spiking or open_runaway or (ratio is not None and ratio >= factor * (reference or _ZERO)):
            judged[subject] = runaway
    return judged


def spikes(
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


def runaway_messages(
    alerts: Sequence[Alert],
    incidents: Mapping[str, Incident],
    said: Mapping[Key, Decimal],
    factor: Decimal,
    day: dt.date,
) -> tuple[list[Decision], dict[Key, Decimal], dict[str, Incident]]:
    """The messages of the firing runaways (each has its open incident): the first of an incident, and an
    escalation when its ratio jumps to `factor` x the highest ratio it has had (a window filling up, a rate that
    climbs through the morning, are no doubling); what is said after them, and the incidents with their peaks."""
    remembered, kept = dict(said), dict(incidents)
    decisions = []
    for alert in alerts:
        incident = kept[alert.subject_id]
        key = alert_key(alert, day)
        last = remembered.get(key)
        escalation = False if last is None else _escalates(alert.ratio, incident.peak, factor)
        if escalation is not None:
            decisions.append(Decision(alert, key, escalation, last))
            remembered[key] = alert.value
        kept[alert.subject_id] = dataclasses.replace(incident, peak=_highest(incident.peak, alert.ratio))
    return decisions, remembered, kept


def organization_beyond(
    alerts: list[Alert],
    projects: Sequence[SpendFigures],
    organization: SpendFigures,
    announced: set[str],
    policy: AlertPolicy,
) -> list[Alert]:
    """The alerts, with the organization's spike only if the organization still spikes without the projects whose
    incidents are announced, or muted (one project's spike or runaway is not a second message for the
    organization)."""
    spike = next((a for a in alerts if a.rule == SPIKE and a.subject_id == ORGANIZATION), None)
    # A muted project's spike is not the organization's either: the user asked for its silence. (Include and
    # exclude globs do not apply to the organization total: `exclude = ["*"]` is how one alerts on it alone.)
    others = [p for p in projects if p.subject_id not in announced and not _muted(policy, p)]
    if spike is None or len(others) == len(projects):
        return alerts
    today, usual = sum((p.today for p in others), _ZERO), sum((p.baseline for p in others), _ZERO)
    rest = dataclasses.replace(organization, today=today, baseline=usual, spread=_ZERO)
    if spike_alert(rest, policy.spike_ratio, policy.min_usd) is not None:
        return alerts
    return [a for a in alerts if a is not spike]


def _muted(policy: AlertPolicy, figures: SpendFigures) -> bool:
    override = policy.projects.get(figures.subject_id) or policy.projects.get(figures.subject_name)
    return override is not None and override.mute
