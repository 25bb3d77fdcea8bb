"""The built-in alert rules: pure functions, data in, decisions out (no I/O, time is an argument).

The same semantics are written as PromQL in deploy/rules/openai-cost-exporter.rules.yml; both are tested
against tests/alert_cases.yaml so the two engines cannot drift:

- spike:          today > spike_ratio x baseline AND today > baseline + 3 x spread AND today >= min_usd
                  (baseline 0: new spend; baseline, spread: baselines.py; one incident across days: decision.py)
- daily_budget:   today > daily budget
- monthly_budget: month_to_date > budget -> "exceeded" (critical);
                  else forecast > budget -> "forecast" (warning)
- runaway:        estimated rate of the recent minutes > runaway_ratio x its usual for them AND >= the
                  hourly floor (rules/runaway.py; estimates from token usage, not billed figures)
- spend_limit:    month_to_date >= OpenAI's hard limit (or it enforces it) -> "exceeded"; > share x limit ->
                  "firing"; forecast > limit -> "forecast" (rules/spend_limit.py; once per month and level)
"""

from __future__ import annotations

import datetime as dt
import fnmatch
from collections.abc import Collection, Sequence
from dataclasses import dataclass
from decimal import Decimal
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from openai_cost_exporter.core import defaults
from openai_cost_exporter.rules.digest import Digest as Digest  # re-exported: the rules' public names
from openai_cost_exporter.rules.digest import DigestRow as DigestRow
from openai_cost_exporter.rules.digest import build_digest as build_digest
from openai_cost_exporter.rules.runaway import RunawayFigures as RunawayFigures  # re-exported
from openai_cost_exporter.rules.runaway import is_runaway
from openai_cost_exporter.rules.spend_limit import LimitFigures as LimitFigures  # re-exported
from openai_cost_exporter.rules.spend_limit import limit_level

Rule = Literal["spike", "daily_budget", "monthly_budget", "runaway", "spend_limit"]
Severity = Literal["warning", "critical"]
Level = Literal["firing", "forecast", "exceeded", "resolved"]

#: subject_id of the organization-wide figures.
ORGANIZATION = "organization"

_ZERO = Decimal(0)
#: Spreads above the usual day a spike must also be (baselines.spread).
SPREADS = Decimal(3)


class ProjectPolicy(BaseModel):
    """Per-project overrides; a field left unset falls back to the organization-wide policy."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    spike_ratio: Decimal | None = Field(default=None, gt=0)
    min_usd: Decimal | None = Field(default=None, ge=0)
    daily_budget_usd: Decimal | None = Field(default=None, gt=0)
    monthly_budget_usd: Decimal | None = Field(default=None, gt=0)
    runaway_ratio: Decimal | None = Field(default=None, gt=0)
    runaway_min_usd: Decimal | None = Field(default=None, ge=0)
    mute: bool = False


class AlertPolicy(BaseModel):
    """What the built-in engine alerts on (the `[alerts]` section of the settings)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    spike_ratio: Decimal = Field(default=defaults.SPIKE_RATIO, gt=0)
    min_usd: Decimal = Field(default=defaults.MIN_USD, ge=0)
    baseline_days: int = Field(default=defaults.BASELINE_DAYS, ge=1, le=366)
    # > 1, or every evaluation at or above the last notified value would be an "escalation".
    escalation_factor: Decimal = Field(default=defaults.ESCALATION_FACTOR, gt=1)
    daily_budget_usd: Decimal | None = Field(default=None, gt=0)  # organization total
    monthly_budget_usd: Decimal | None = Field(default=None, gt=0)  # organization total
    runaway_ratio: Decimal = Field(default=defaults.RUNAWAY_RATIO, gt=0)
    runaway_min_usd: Decimal = Field(default=defaults.RUNAWAY_MIN_USD, ge=0)  # estimated USD per hour
    spend_limit_share: Decimal = Field(default=defaults.SPEND_LIMIT_SHARE, gt=0, le=1)  # of OpenAI's hard limit
    organization: bool = True  # spike rule on the organization total too
    include: list[str] = Field(default_factory=list)  # fnmatch globs on project id or name; empty = all
    exclude: list[str] = Field(default_factory=list)
    projects: dict[str, ProjectPolicy] = Field(default_factory=dict)  # keyed by project id or exact name


@dataclass(frozen=True, slots=True)
class SpendFigures:
    """What the rules look at for one subject (a project, or the organization)."""

    subject_id: str
    subject_name: str
    today: Decimal  # today so far (UTC day)
    baseline: Decimal  # what is usually spent by now (baselines.py: median of the same kind of day, by this hour)
    month_to_date: Decimal
    forecast: Decimal  # month to date plus the recent pace (baselines.pace_forecast)
    spread: Decimal = _ZERO  # how much the day usually varies by now (a robust standard deviation)
    known: bool = True  # False: the history is too short for a usual day (baselines.MIN_KNOWN_DAYS): no spike


@dataclass(frozen=True, slots=True)
class Alert:
    """One rule breached by one subject."""

    rule: Rule
    subject_id: str
    subject_name: str
    severity: Severity
    value: Decimal  # the figure compared
    threshold: Decimal  # what it was compared with
    baseline: Decimal
    ratio: Decimal | None  # today / baseline, spike only, None when the baseline is 0
    level: Level
    since: dt.date | None = None  # the UTC day its incident opened (runaway, spike): keys its message, not today


@dataclass(frozen=True, slots=True)
class Limits:
    """The thresholds one subject is held to."""

    spike_ratio: Decimal
    min_usd: Decimal
    daily_budget_usd: Decimal | None
    monthly_budget_usd: Decimal | None
    runaway_ratio: Decimal = defaults.RUNAWAY_RATIO
    runaway_min_usd: Decimal = defaults.RUNAWAY_MIN_USD


def evaluate(policy: AlertPolicy, projects: Sequence[SpendFigures], organization: SpendFigures | None) -> list[Alert]:
    """Every alert the figures breach: projects first (in the given order), then the organization."""
    alerts: list[Alert] = []
    for figures in projects:
        limits = project_limits(policy, figures.subject_id, figures.subject_name)
        if limits is not None:
            alerts.extend(_check(figures, limits))
    if organization is not None:
        org_limits = Limits(policy.spike_ratio, policy.min_usd, policy.daily_budget_usd, policy.monthly_budget_usd)
        alerts.extend(_check(organization, org_limits, spike=policy.organization))
    return alerts


def evaluate_runaways(policy: AlertPolicy, projects: Sequence[RunawayFigures]) -> list[Alert]:
    """A runaway alert for every watched project whose estimated hourly rate breaches its limits."""
    alerts = []
    for figures in projects:
        limits = project_limits(policy, figures.subject_id, figures.subject_name)
        if limits is None or not is_runaway(figures, limits.runaway_ratio, limits.runaway_min_usd):
            continue
        alerts.append(
            Alert(
                rule="runaway",
                subject_id=figures.subject_id,
                subject_name=figures.subject_name,
                severity="critical",
                value=figures.rate,
                threshold=limits.runaway_ratio * figures.usual,
                baseline=figures.usual,
                ratio=figures.rate / figures.usual if figures.usual > _ZERO else None,
                level="firing",
            )
        )
    return alerts


def evaluate_spend_limits(policy: AlertPolicy, subjects: Sequence[LimitFigures], month: dt.date) -> list[Alert]:
    """An alert for every watched subject near or at its hard spend limit; keyed by the month (`since`), so each
    level is one message a month."""
    alerts = []
    for figures in subjects:
        if (
            figures.subject_id != ORGANIZATION
            and project_limits(policy, figures.subject_id, figures.subject_name) is None
        ):
            continue
        level = limit_level(figures, policy.spend_limit_share)
        if level is None:
            continue
        alerts.append(
            Alert(
                rule="spend_limit",
                subject_id=figures.subject_id,
                subject_name=figures.subject_name,
                severity="warning" if level == "forecast" else "critical",
                value=figures.forecast if level == "forecast" else figures.month_to_date,
                threshold=figures.limit,
                baseline=figures.pace,
                ratio=figures.month_to_date / figures.limit if figures.limit > _ZERO else None,
                level=level,
                since=month,
            )
        )
    return alerts


def fold_into_runaways(alerts: Sequence[Alert], held: Collection[str] = ()) -> list[Alert]:
    """One incident, one message: a project's daily spike is left out while it has a runaway alert, and for the
    projects in `held` (a runaway open, or over since earlier today: the billed spike is its echo)."""
    running = {alert.subject_id for alert in alerts if alert.rule == "runaway"} | set(held)
    return [alert for alert in alerts if not (alert.rule == "spike" and alert.subject_id in running)]


def runaway_resolved(figures: RunawayFigures, limits: Limits | None, since: dt.date) -> Alert:
    """The message that a runaway incident opened on `since` is over: the rate is back under its limits."""
    ratio = limits.runaway_ratio if limits is not None else defaults.RUNAWAY_RATIO
    return Alert(
        rule="runaway",
        subject_id=figures.subject_id,
        subject_name=figures.subject_name,
        severity="warning",
        value=figures.rate,
        threshold=ratio * figures.usual,
        baseline=figures.usual,
        ratio=figures.rate / figures.usual if figures.usual > _ZERO else None,
        level="resolved",
        since=since,
    )


def project_limits(policy: AlertPolicy, project_id: str, name: str) -> Limits | None:
    """The limits that apply to a project, or None when it is muted or filtered out."""
    if not is_watched(policy, project_id, name):
        return None
    override = policy.projects.get(project_id) or policy.projects.get(name) or ProjectPolicy()
    if override.mute:
        return None
    return Limits(
        spike_ratio=_or(override.spike_ratio, policy.spike_ratio),
        min_usd=_or(override.min_usd, policy.min_usd),
        daily_budget_usd=override.daily_budget_usd,
        monthly_budget_usd=override.monthly_budget_usd,
        runaway_ratio=_or(override.runaway_ratio, policy.runaway_ratio),
        runaway_min_usd=_or(override.runaway_min_usd, policy.runaway_min_usd),
    )


def _or(value: Decimal | None, default: Decimal) -> Decimal:
    return default if value is None else value


def is_watched(policy: AlertPolicy, project_id: str, name: str) -> bool:
    """Whether include/exclude globs (matched on the id or the name) keep this project."""

    def matches(patterns: list[str]) -> bool:
        return any(fnmatch.fnmatchcase(project_id, p) or fnmatch.fnmatchcase(name, p) for p in patterns)

    if policy.include and not matches(policy.include):
        return False
    return not matches(policy.exclude)


def _check(figures: SpendFigures, limits: Limits, *, spike: bool = True) -> list[Alert]:
    found = [
        spike_alert(figures, limits.spike_ratio, limits.min_usd) if spike else None,
        daily_budget_alert(figures, limits.daily_budget_usd),
        monthly_budget_alert(figures, limits.monthly_budget_usd),
    ]
    return [alert for alert in found if alert is not None]


def spike_alert(figures: SpendFigures, ratio: Decimal, min_usd: Decimal) -> Alert | None:
    """today > ratio x baseline, today > baseline + 3 spreads, and today >= min_usd (a zero baseline alerts on new
    spend over the floor; an unknown one, too little history, judges nothing). The spread keeps a noisy project's
    ordinary day from being a spike."""
    threshold = max(ratio * figures.baseline, figures.baseline + SPREADS * figures.spread)
    if not (figures.known and figures.today > threshold and figures.today >= min_usd):
        return None
    return _alert(
        figures,
        "spike",
        "warning",
        value=figures.today,
        threshold=threshold,
        ratio=figures.today / figures.baseline if figures.baseline > _ZERO else None,
    )


def daily_budget_alert(figures: SpendFigures, budget: Decimal | None) -> Alert | None:
    """today > the daily budget."""
    if budget is None or not figures.today > budget:
        return None
    return _alert(figures, "daily_budget", "critical", value=figures.today, threshold=budget)


def monthly_budget_alert(figures: SpendFigures, budget: Decimal | None) -> Alert | None:
    """Month to date over budget ("exceeded", critical), else the month-end forecast over it ("forecast")."""
    if budget is None:
        return None
    if figures.month_to_date > budget:
        return _alert(
            figures,
            "monthly_budget",
            "critical",
            value=figures.month_to_date,
            threshold=budget,
            level="exceeded",
        )
    if figures.forecast > budget:
        return _alert(figures, "monthly_budget", "warning", value=figures.forecast, threshold=budget, level="forecast")
    return None


def _alert(
    figures: SpendFigures,
    rule: Rule,
    severity: Severity,
    *,
    value: Decimal,
    threshold: Decimal,
    ratio: Decimal | None = None,
    level: Level = "firing",
) -> Alert:
    return Alert(
        rule=rule,
        subject_id=figures.subject_id,
        subject_name=figures.subject_name,
        severity=severity,
        value=value,
        threshold=threshold,
        baseline=figures.baseline,
        ratio=ratio,
        level=level,
    )
