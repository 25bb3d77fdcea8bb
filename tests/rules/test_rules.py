"""Tests of the pure alert rules, the month forecast and the digest."""

from __future__ import annotations

import dataclasses
import datetime as dt
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
import yaml
from pydantic import ValidationError

from openai_cost_exporter.figures.baselines import month_forecast
from openai_cost_exporter.figures.snapshot import CostSnapshot
from openai_cost_exporter.figures.spend_limits import limit_figures
from openai_cost_exporter.rules import (
    ORGANIZATION,
    AlertPolicy,
    LimitFigures,
    ProjectPolicy,
    SpendFigures,
    build_digest,
    evaluate,
    evaluate_runaways,
    evaluate_spend_limits,
)
from openai_cost_exporter.rules.runaway import RunawayFigures

CASES = yaml.safe_load((Path(__file__).parents[1] / "alert_cases.yaml").read_text())
D = Decimal
#: The subjects a spend_limit case is run for: a project, and the organization.
LIMIT_SUBJECTS = [("proj_a", "Alpha"), (ORGANIZATION, "Organization")]
MONTH = dt.date(2026, 12, 1)


def figures(
    subject_id: str = "proj_a",
    name: str = "Alpha",
    *,
    today: str = "0",
    baseline: str = "0",
    month_to_date: str = "0",
    forecast: str = "0",
    spread: str = "0",
) -> SpendFigures:
    return SpendFigures(subject_id, name, D(today), D(baseline), D(month_to_date), D(forecast), D(spread))


def rules_of(alerts: list[Any]) -> list[tuple[str, str, str]]:
    return [(a.rule, a.subject_id, a.level) for a in alerts]


@pytest.mark.parametrize("case", CASES["spike"], ids=lambda c: c["name"])
def test_spike_cases(case: dict[str, Any]) -> None:
    """The spike rule fires exactly on the shared cases of alert_cases.yaml."""
    known = case["baseline"] is not None  # null: the usual day is unknown (too short a history)
    project = figures(today=case["today"], baseline=case["baseline"] or "0", spread=case.get("spread", "0"))
    alerts = evaluate(AlertPolicy(), [dataclasses.replace(project, known=known)], None)
    assert rules_of(alerts) == ([("spike", "proj_a", "firing")] if case["fires"] else [])


@pytest.mark.parametrize("case", CASES["daily_budget"], ids=lambda c: c["name"])
def test_daily_budget_cases(case: dict[str, Any]) -> None:
    """The daily budget rule fires exactly on the shared cases, for a project and for the organization."""
    policy = AlertPolicy(
        daily_budget_usd=case["budget"],
        organization=False,
        projects={"proj_a": ProjectPolicy(daily_budget_usd=case["budget"], spike_ratio=D(1000))},
    )
    org = figures(ORGANIZATION, "Organization", today=case["today"], baseline="1000")
    alerts = evaluate(policy, [figures(today=case["today"], baseline="1000")], org)
    expected = [("daily_budget", "proj_a", "firing"), ("daily_budget", ORGANIZATION, "firing")]
    assert rules_of(alerts) == (expected if case["fires"] else [])
    assert all(a.severity == "critical" and a.threshold == D(case["budget"]) for a in alerts)


@pytest.mark.parametrize("case", CASES["monthly_budget"], ids=lambda c: c["name"])
def test_monthly_budget_cases(case: dict[str, Any]) -> None:
    """The monthly budget rule gives the level of the shared cases (exceeded, forecast or nothing)."""
    org = figures(
        ORGANIZATION,
        "Organization",
        month_to_date=case["month_to_date"],
        forecast=case["forecast"],
    )
    alerts = evaluate(AlertPolicy(monthly_budget_usd=case["budget"]), [], org)
    if case["level"] is None:
        assert alerts == []
        return
    (alert,) = alerts
    assert (alert.rule, alert.level) == ("monthly_budget", case["level"])
    assert alert.severity == ("critical" if case["level"] == "exceeded" else "warning")
    expected_value = case["month_to_date"] if case["level"] == "exceeded" else case["forecast"]
    assert alert.value == D(expected_value)


@pytest.mark.parametrize("case", CASES["runaway"], ids=lambda c: c["name"])
def test_runaway_cases(case: dict[str, Any]) -> None:
    """The runaway rule fires exactly on the shared cases, critical, with the estimated rate against 3x usual."""
    if case["usual"] is None:  # not known: the estimates give the rule no figures (Estimates.runaway_figures)
        assert not case["fires"]
        return
    project = RunawayFigures("proj_a", "Alpha", rate=D(case["rate"]), usual=D(case["usual"]))
    alerts = evaluate_runaways(AlertPolicy(), [project])
    assert rules_of(alerts) == ([("runaway", "proj_a", "firing")] if case["fires"] else [])
    for alert in alerts:
        assert (alert.severity, alert.value, alert.baseline) == ("critical", D(case["rate"]), D(case["usual"]))
        assert alert.threshold == 3 * D(case["usual"])


@pytest.mark.parametrize("subject", LIMIT_SUBJECTS, ids=lambda s: s[0])
@pytest.mark.parametrize("case", [c for c in CASES["spend_limit"] if c["limit"] is not None], ids=lambda c: c["name"])
def test_spend_limit_cases(case: dict[str, Any], subject: tuple[str, str]) -> None:
    """The hard spend limit rule gives the level of the shared cases (exceeded, firing, forecast or nothing), with
    the limit as threshold, for a project and for the organization, keyed by the month."""
    subject_id, name = subject
    limit = LimitFigures(
        subject_id,
        name,
        month_to_date=D(case["month_to_date"]),
        forecast=D(case["forecast"]),
        pace=D(10),
        limit=D(case["limit"]),
        enforcing=case["enforcing"],
    )
    alerts = evaluate_spend_limits(AlertPolicy(), [limit], MONTH)
    if case["level"] is None:
        assert alerts == []
        return
    (alert,) = alerts
    assert (alert.rule, alert.subject_id, alert.level, alert.since) == ("spend_limit", subject_id, case["level"], MONTH)
    assert alert.severity == ("warning" if case["level"] == "forecast" else "critical")
    assert alert.value == D(case["forecast"] if case["level"] == "forecast" else case["month_to_date"])
    assert alert.threshold == D(case["limit"])


@pytest.mark.parametrize("case", [c for c in CASES["spend_limit"] if c["limit"] is None], ids=lambda c: c["name"])
def test_spend_limit_cases_without_a_limit(case: dict[str, Any]) -> None:
    """A project and an organization without a hard limit are not judged, however much they spend: the engine
    builds no limit figures for them (a limit of 0 would read as "exceeded")."""
    pid = "proj_a"
    snapshot = CostSnapshot(
        taken_at=dt.datetime(2026, 12, 20, 12, tzinfo=dt.UTC),
        day=dt.date(2026, 12, 20),
        names={pid: "Alpha"},
        today={pid: D(0)},
        baseline={pid: D(0)},
        month_to_date={pid: D(case["month_to_date"])},
        forecast={pid: D(case["forecast"])},
        history={},
    )
    figures = limit_figures(snapshot)
    assert figures == []
    assert evaluate_spend_limits(AlertPolicy(), figures, MONTH) == []


def test_spike_alert_carries_figures() -> None:
    """A spike alert reports today's value, the threshold, the baseline and the ratio."""
    (alert,) = evaluate(AlertPolicy(), [figures(today="4.00", baseline="1.00")], None)
    assert (alert.value, alert.threshold, alert.baseline, alert.ratio) == (D(4), D("1.5"), D(1), D(4))
    assert (alert.subject_name, alert.severity) == ("Alpha", "warning")


def test_new_spend_has_no_ratio() -> None:
    """With a zero baseline the spike alert has no ratio (new spend)."""
    (alert,) = evaluate(AlertPolicy(), [figures(today="2", baseline="0")], None)
    assert alert.ratio is None


@pytest.mark.parametrize("key", ["proj_a", "Alpha"])
def test_project_override_by_id_or_name(key: str) -> None:
    """A per-project override (keyed by id or exact name) replaces the ratio and floor for that project."""
    policy = AlertPolicy(projects={key: ProjectPolicy(spike_ratio=D(10), min_usd=D(0))})
    alpha = figures(today="4", baseline="1")
    beta = figures("proj_b", "Beta", today="4", baseline="1")
    assert rules_of(evaluate(policy, [alpha, beta], None)) == [("spike", "proj_b", "firing")]
    small = figures(today="0.5", baseline="0.01")
    assert rules_of(evaluate(policy, [small], None)) == [("spike", "proj_a", "firing")]


def test_override_by_id_wins_over_name() -> None:
    """When both the id and the name have an entry, the id's entry applies."""
    policy = AlertPolicy(projects={"Alpha": ProjectPolicy(mute=True), "proj_a": ProjectPolicy(spike_ratio=D(2))})
    assert rules_of(evaluate(policy, [figures(today="4", baseline="1")], None)) == [("spike", "proj_a", "firing")]


def test_project_budgets() -> None:
    """Project budgets come only from the project's own policy, not from the organization's."""
    policy = AlertPolicy(
        daily_budget_usd=D(1),
        monthly_budget_usd=D(1),
        projects={"proj_a": ProjectPolicy(monthly_budget_usd=D(100))},
    )
    alpha = figures(today="5", baseline="5", month_to_date="60", forecast="150")
    beta = figures("proj_b", "Beta", today="5", baseline="5", month_to_date="60", forecast="150")
    assert rules_of(evaluate(policy, [alpha, beta], None)) == [("monthly_budget", "proj_a", "forecast")]


def test_mute() -> None:
    """A muted project produces no alert of any kind."""
    policy = AlertPolicy(projects={"proj_a": ProjectPolicy(mute=True, daily_budget_usd=D(1))})
    assert evaluate(policy, [figures(today="50", baseline="1")], None) == []


@pytest.mark.parametrize(
    ("include", "exclude", "expected"),
    [
        ([], [], ["proj_a", "proj_b", "proj_c"]),
        (["proj_a"], [], ["proj_a"]),
        (["Be*"], [], ["proj_b"]),
        ([], ["proj_b"], ["proj_a", "proj_c"]),
        ([], ["*-dev"], ["proj_a", "proj_b"]),
        (["proj_*"], ["Alpha"], ["proj_b", "proj_c"]),
        (["alpha"], [], []),  # globs are case-sensitive
    ],
)
def test_include_exclude(include: list[str], exclude: list[str], expected: list[str]) -> None:
    """Include/exclude globs match a project's id or its name; exclude wins."""
    projects = [
        figures("proj_a", "Alpha", today="4", baseline="1"),
        figures("proj_b", "Beta", today="4", baseline="1"),
        figures("proj_c", "gamma-dev", today="4", baseline="1"),
    ]
    alerts = evaluate(AlertPolicy(include=include, exclude=exclude, organization=False), projects, None)
    assert [a.subject_id for a in alerts] == expected


@pytest.mark.parametrize(("enabled", "expected"), [(True, ["spike"]), (False, [])])
def test_organization_spike(enabled: bool, expected: list[str]) -> None:
    """The spike rule applies to the organization total only when `organization` is on."""
    org = figures(ORGANIZATION, "Organization", today="40", baseline="10")
    alerts = evaluate(AlertPolicy(organization=enabled, include=["nothing"]), [], org)
    assert [a.rule for a in alerts] == expected


def test_organization_not_filtered() -> None:
    """Project filters and overrides do not silence the organization's rules."""
    policy = AlertPolicy(exclude=["*"], projects={"organization": ProjectPolicy(mute=True)})
    org = figures(ORGANIZATION, "Organization", today="40", baseline="10")
    assert rules_of(evaluate(policy, [figures(today="40", baseline="1")], org)) == [("spike", ORGANIZATION, "firing")]


def test_policy_defaults() -> None:
    """The defaults are the documented ones."""
    policy = AlertPolicy()
    assert (policy.spike_ratio, policy.min_usd, policy.baseline_days, policy.escalation_factor) == (
        D("1.5"),
        D("1.0"),
        7,
        D(2),
    )
    assert policy.daily_budget_usd is None and policy.organization is True


def test_policy_reports_every_error_at_once() -> None:
    """Invalid settings are all reported in one ValidationError."""
    with pytest.raises(ValidationError) as caught:
        AlertPolicy.model_validate(
            {
                "spike_ratio": 0,
                "min_usd": -1,
                "escalation_factor": 1,
                "baseline_days": 0,
                "projects": {"x": {"spike_ratio": -2, "daily_budget_usd": 0}},
                "bogus": 1,
            }
        )
    locations = {tuple(map(str, e["loc"])) for e in caught.value.errors()}
    assert locations == {
        ("spike_ratio",),
        ("min_usd",),
        ("escalation_factor",),
        ("baseline_days",),
        ("projects", "x", "spike_ratio"),
        ("projects", "x", "daily_budget_usd"),
        ("bogus",),
    }


def test_policy_is_frozen_and_parses_strings() -> None:
    """The policy is immutable and takes figures as strings or floats without binary noise."""
    policy = AlertPolicy.model_validate({"spike_ratio": "2.5", "daily_budget_usd": 10.1})
    assert (policy.spike_ratio, policy.daily_budget_usd) == (D("2.5"), D("10.1"))
    with pytest.raises(ValidationError):
        policy.spike_ratio = D(3)


@pytest.mark.parametrize(
    ("now", "mtd", "expected"),
    [
        (dt.datetime(2026, 11, 16, 0, tzinfo=dt.UTC), "150", D(300)),  # half of 30 days
        (dt.datetime(2026, 11, 1, 0, tzinfo=dt.UTC), "5", D(5)),  # first instant: nothing to project
        (dt.datetime(2026, 11, 1, 12, tzinfo=dt.UTC), "1", D(60)),  # half a day of 30
        (dt.datetime(2026, 2, 8, 0, tzinfo=dt.UTC), "70", D(280)),  # a quarter of February
        (dt.datetime(2026, 12, 31, 12, tzinfo=dt.UTC), "0", D(0)),
        (dt.datetime(2026, 12, 16, 12), "155", D(310)),  # naive means UTC
        (dt.datetime(2026, 11, 16, 1, tzinfo=dt.timezone(dt.timedelta(hours=1))), "150", D(300)),
    ],
)
def test_month_forecast(now: dt.datetime, mtd: str, expected: Decimal) -> None:
    """The forecast is month to date divided by the elapsed fraction of the UTC month."""
    assert month_forecast(D(mtd), now) == expected


def test_month_forecast_at_month_end() -> None:
    """Just before the month ends, the forecast is barely above month to date."""
    now = dt.datetime(2026, 11, 30, 23, 59, 59, tzinfo=dt.UTC)
    assert D(100) < month_forecast(D(100), now) < D("100.01")


def test_digest_orders_rows_and_movers() -> None:
    """The digest sorts projects by amount and picks the top movers by absolute change."""
    digest = build_digest(
        dt.date(2026, 11, 27),
        totals={"p1": D(10), "p2": D(50), "p3": D(5), "p4": D(5)},
        baselines={"p1": D(10), "p2": D(20), "p3": D(45), "p5": D(8)},
        names={"p1": "One", "p2": "Two", "p3": "Three", "p4": "Four"},
        top=3,
    )
    assert [r.project_id for r in digest.rows] == ["p2", "p1", "p4", "p3", "p5"]
    assert [(r.project_id, r.change) for r in digest.movers] == [("p3", D(-40)), ("p2", D(30)), ("p5", D(-8))]
    assert (digest.total, digest.baseline_total) == (D(70), D(83))
    assert digest.rows[-1].name == "p5"  # unknown name falls back to the id


def test_digest_empty() -> None:
    """A day without spend gives an empty digest with a zero total."""
    digest = build_digest(dt.date(2026, 11, 27), {}, {}, {})
    assert (digest.total, digest.rows, digest.movers) == (D(0), (), ())
