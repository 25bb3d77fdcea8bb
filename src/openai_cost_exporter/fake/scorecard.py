"""The scorecard of the labelled corpus: what each scenario sent, held against its labels.

A message about a labelled incident's project (rule spike or runaway) on the incident's day(s), or while it
lasts and until its "over" message, is part of that incident: the first such message detects it, an escalation
or its "resolved" message is counted beside it. An organization spike on an incident's day is counted with the
incident too (the same event said twice), not as a false alarm. A project's first "new spend" message in its
first week is its notice. Every other message is a false alarm. `spend_limit` messages are not this corpus's
concern: the replay lists no hard limit, so there are none.
"""

from __future__ import annotations

import datetime as dt
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field

from openai_cost_exporter.core.clock import FrozenClock
from openai_cost_exporter.fake.api import FakeAdminAPI
from openai_cost_exporter.fake.corpus import RUNAWAY, Incident, Scenario
from openai_cost_exporter.fake.replay import FINE, HOURLY, KEY, Replay, Sent, in_process_client, moments
from openai_cost_exporter.rules import ORGANIZATION, AlertPolicy

NOTICE_DAYS = 7
#: After a runaway's end, its "over" message may come this late and still belong to it.
OVER_GRACE = dt.timedelta(hours=3)
PROJECT_RULES = ("spike", "runaway")
LISTED = 12  # false alarms listed per scenario


@dataclass
class IncidentScore:
    """What was said about one incident."""

    incident: Incident
    messages: list[Sent] = field(default_factory=list)

    @property
    def caught(self) -> bool:
        return bool(self.first)

    @property
    def first(self) -> Sent | None:
        found = [m for m in self.messages if m.level != "resolved" and m.subject_id != ORGANIZATION]
        return found[0] if found else None

    @property
    def delay_minutes(self) -> float | None:
        """Minutes from the incident's start to its first message."""
        first = self.first
        return None if first is None else (first.at - self.incident.start).total_seconds() / 60

    @property
    def escalations(self) -> int:
        return sum(m.escalation for m in self.messages)

    @property
    def resolved(self) -> int:
        return sum(m.level == "resolved" for m in self.messages)

    @property
    def extra(self) -> int:
        """Messages beyond the first, its escalations and its "over" message: what one incident should not send."""
        return len(self.messages) - (1 if self.caught else 0) - self.escalations - self.resolved


@dataclass
class ScenarioScore:
    """One scenario's messages, sorted by what they were."""

    scenario: Scenario
    projects: int  # subjects that spend (the unattributed spend included)
    sent: list[Sent]
    incidents: list[IncidentScore]
    notices: list[Sent]
    false_alarms: list[Sent]

    @property
    def project_weeks(self) -> float:
        return self.projects * self.scenario.days / 7

    def by_rule(self) -> dict[str, int]:
        return dict(sorted(Counter(f"{m.rule}/{m.level}" for m in self.sent).items()))

    @property
    def missed(self) -> list[Incident]:
        return [s.incident for s in self.incidents if s.incident.required and not s.caught]


def replay_scenario(
    scenario: Scenario, policy: AlertPolicy, *, every: dt.timedelta = HOURLY, fine: dt.timedelta = FINE
) -> tuple[ScenarioScore, dict[str, str]]:
    """Replay a scenario's scored period (every `every`, and every `fine` round each runaway's start: `moments`)
    and score it; with the names of its subjects."""
    clock = FrozenClock()
    org, ids = scenario.organization(clock)
    fine_from = [i.start for i in scenario.incidents if i.kind == RUNAWAY]
    replay = Replay(in_process_client(FakeAdminAPI(org, admin_key=KEY)), clock, policy)
    try:
        sent = replay.run(moments(scenario.first_moment, scenario.end_moment, fine_from, every=every, fine=fine))
    finally:
        replay.close()
    names = {p.id: p.name or p.id for p in org.projects}
    return score(scenario, ids, len(org.spenders), sent), names


def score(scenario: Scenario, ids: dict[str, str], projects: int, sent: Sequence[Sent]) -> ScenarioScore:
    """Sort a scenario's messages into its incidents, its notices and its false alarms."""
    incidents = [IncidentScore(incident) for incident in scenario.incidents]
    notices: list[Sent] = []
    false_alarms: list[Sent] = []
    noticed: set[str] = set()
    starts = {ids[n.project]: n.day for n in scenario.notices}
    for message in sent:
        owner = next((s for s in incidents if _belongs(message, s.incident, ids)), None)
        if owner is not None:
            owner.messages.append(message)
        elif _notice(message, starts) and message.subject_id not in noticed:
            noticed.add(message.subject_id)
            notices.append(message)
        else:
            false_alarms.append(message)
    return ScenarioScore(scenario, projects, list(sent), incidents, notices, false_alarms)


def _belongs(message: Sent, incident: Incident, ids: dict[str, str]) -> bool:
    days = {incident.start.date(), (incident.end - dt.timedelta(microseconds=1)).date()}
    if message.subject_id == ORGANIZATION:
        return message.at.date() in days
    if message.subject_id != ids[incident.project] or message.rule not in PROJECT_RULES:
        return False
    if message.at.date() in days or (message.level == "resolved" and message.day in days):
        return True  # an "over" message is keyed by the day its incident opened, whenever it comes
    return incident.kind == RUNAWAY and incident.start <= message.at <= incident.end + OVER_GRACE


def _notice(message: Sent, starts: dict[str, dt.date]) -> bool:
    start = starts.get(message.subject_id)
    return start is not None and message.rule == "spike" and 0 <= (message.at.date() - start).days < NOTICE_DAYS


def new_spend(sent: Sequence[Sent]) -> list[Sent]:
    """The "new spend" messages: spikes of a project with no usual spend."""
    return [m for m in sent if m.rule == "spike" and m.ratio is None and m.level != "resolved"]


# ---- the scorecard in plain text --------------------------------------------------------------------------


def render(scores: Sequence[ScenarioScore], names: dict[str, dict[str, str]]) -> str:
    """A table per scenario and the totals, as bench/alert_quality.py prints it."""
    lines = []
    for s in scores:
        lines += _scenario_lines(s, names.get(s.scenario.name, {}))
    lines += ["", *totals_lines(scores)]
    return "\n".join(lines)


def _scenario_lines(s: ScenarioScore, names: dict[str, str]) -> list[str]:
    head = (
        f"{s.scenario.name} ({s.scenario.group}, from {s.scenario.start:%a %Y-%m-%d}, {s.scenario.days} days, "
        f"{s.projects} projects): {len(s.sent)} messages {s.by_rule()}"
    )
    lines = ["", head, f"  false alarms: {len(s.false_alarms)}, notices: {len(s.notices)}"]
    for m in s.false_alarms[:LISTED]:
        name = names.get(m.subject_id, m.subject_id).encode("unicode_escape").decode()  # one line per message
        lines.append(f"    false alarm {m.at:%a %m-%d %H:%M} {m.rule}/{m.level} {name}")
    if len(s.false_alarms) > LISTED:
        lines.append(f"    ... and {len(s.false_alarms) - LISTED} more")
    for i in s.incidents:
        delay = "missed" if i.delay_minutes is None else f"first after {i.delay_minutes:.0f} min"
        lines.append(
            f"  incident {i.incident.kind} {i.incident.factor}x {i.incident.project} {i.incident.start:%a %m-%d %H:%M}:"
            f" {delay}, {len(i.messages)} messages ({i.escalations} escalations, {i.resolved} over, {i.extra} extra)"
        )
    return lines


def totals_lines(scores: Sequence[ScenarioScore]) -> list[str]:
    """False alarms per 100 project-weeks by group and in all, misses, messages per incident, runaway delays."""
    lines = ["TOTAL"]
    for group in [*sorted({s.scenario.group for s in scores}), "all"]:
        chosen = [s for s in scores if group in ("all", s.scenario.group)]
        weeks = sum(s.project_weeks for s in chosen)
        alarms = sum(len(s.false_alarms) for s in chosen)
        lines.append(f"  {group:9} {alarms:4} false alarms in {weeks:6.1f} project-weeks: {rate(alarms, weeks):6.1f}")
    incidents = [i for s in scores for i in s.incidents]
    required = [i for i in incidents if i.incident.required]
    missed = [i for i in required if not i.caught]
    lines.append(f"  incidents: {len(incidents)} ({len(required)} required), missed: {len(missed)}")
    if incidents:
        per = sum(len(i.messages) for i in incidents) / len(incidents)
        extra = sum(i.extra for i in incidents)
        lines.append(f"  messages per incident: {per:.2f} ({extra} beyond one + escalations + over)")
    for i in incidents:
        if i.incident.kind == RUNAWAY:
            delay = "missed" if i.delay_minutes is None else f"{i.delay_minutes:.0f} min"
            lines.append(f"  runaway {i.incident.factor:>4}x from {i.incident.start:%a %H:%M}: {delay}")
    return lines


def rate(alarms: int, project_weeks: float) -> float:
    """False alarms per 100 project-weeks."""
    return 100 * alarms / project_weeks if project_weeks else 0.0
