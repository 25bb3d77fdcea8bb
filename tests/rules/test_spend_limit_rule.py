"""The hard spend limit rule: its levels, the days left at the recent pace, the alerts, and what a message says."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal

import pytest

from openai_cost_exporter.core.models import SpendLimit
from openai_cost_exporter.figures.snapshot import build_snapshot
from openai_cost_exporter.figures.spend_limits import limit_figures
from openai_cost_exporter.notify.text import limit_details
from openai_cost_exporter.rules import ORGANIZATION, AlertPolicy, LimitFigures, ProjectPolicy, evaluate_spend_limits
from openai_cost_exporter.rules.spend_limit import days_to_limit, limit_level

D = Decimal
SHARE = D("0.8")
MONTH = dt.date(2026, 12, 1)
DATA_TIME = dt.datetime(2026, 12, 2, 12, tzinfo=dt.UTC)


def figures(
    mtd: str = "0",
    limit: str = "1000",
    *,
    forecast: str | None = None,
    pace: str = "0",
    enforcing: bool = False,
    subject_id: str = "proj_a",
    name: str = "Checkout Agent",
) -> LimitFigures:
    return LimitFigures(
        subject_id=subject_id,
        subject_name=name,
        month_to_date=D(mtd),
        forecast=D(mtd if forecast is None else forecast),
        pace=D(pace),
        limit=D(limit),
        enforcing=enforcing,
    )


@pytest.mark.parametrize(
    ("subject", "level"),
    [
        (figures("1000"), "exceeded"),  # at the limit
        (figures("1200"), "exceeded"),
        (figures("10", enforcing=True), "exceeded"),  # OpenAI says it stopped serving
        (figures("999.99"), "firing"),
        (figures("800.01"), "firing"),
        (figures("800"), None),  # exactly the share: not over it
        (figures("800", forecast="1000.01"), "forecast"),
        (figures("100", forecast="1000"), None),  # a forecast at the limit does not cross it
        (figures("100", forecast="5000"), "forecast"),
        (figures("0", forecast="0"), None),
        (figures("0", limit="0"), "exceeded"),  # a zero limit stops everything
    ],
)
def test_limit_level(subject: LimitFigures, level: str | None) -> None:
    """Exceeded at the limit or while enforced, firing over the share, forecast when the month-end crosses it."""
    assert limit_level(subject, SHARE) == level


def test_limit_level_share_is_the_policys() -> None:
    """The share decides firing: 85% of the limit fires at a share of 0.8 and not at 0.9."""
    subject = figures("850")
    assert limit_level(subject, D("0.8")) == "firing"
    assert limit_level(subject, D("0.9")) is None


@pytest.mark.parametrize(
    ("subject", "days"),
    [
        (figures("850", pace="40"), D("3.75")),
        (figures("0", pace="40"), D("25")),
        (figures("1000", pace="40"), D(0)),  # reached
        (figures("1500", pace="40"), D(0)),  # over: not negative
        (figures("10", pace="40", enforcing=True), D(0)),
        (figures("500", pace="0"), None),  # no pace to project from
        (figures("500", pace="-3"), None),  # credits are no pace
    ],
)
def test_days_to_limit(subject: LimitFigures, days: Decimal | None) -> None:
    """The days left are what remains of the limit over the recent pace; none without a pace, 0 once there."""
    assert days_to_limit(subject) == days


def test_evaluate_spend_limits_levels_and_severity() -> None:
    """Each subject near or at its limit gets one alert: critical when firing or exceeded, warning for a forecast."""
    subjects = [
        figures("900", subject_id="proj_fire", pace="40"),
        figures("1000", subject_id="proj_over"),
        figures("100", forecast="1100", subject_id="proj_soon", pace="45"),
        figures("100", subject_id="proj_far"),
    ]
    alerts = evaluate_spend_limits(AlertPolicy(), subjects, MONTH)
    assert [(a.subject_id, a.level, a.severity) for a in alerts] == [
        ("proj_fire", "firing", "critical"),
        ("proj_over", "exceeded", "critical"),
        ("proj_soon", "forecast", "warning"),
    ]
    fire, _, soon = alerts
    assert {a.rule for a in alerts} == {"spend_limit"}
    assert {a.since for a in alerts} == {MONTH}
    assert (fire.value, fire.threshold, fire.baseline, fire.ratio) == (D("900"), D("1000"), D("40"), D("0.9"))
    assert soon.value == D("1100")  # the forecast is the figure compared


def test_evaluate_spend_limits_uses_the_policy_share() -> None:
    """`spend_limit_share` of the policy moves the firing point."""
    subject = [figures("850")]
    assert [a.level for a in evaluate_spend_limits(AlertPolicy(spend_limit_share=D("0.8")), subject, MONTH)] == [
        "firing"
    ]
    assert evaluate_spend_limits(AlertPolicy(spend_limit_share=D("0.9")), subject, MONTH) == []


@pytest.mark.parametrize(
    "policy",
    [
        AlertPolicy(projects={"proj_a": ProjectPolicy(mute=True)}),
        AlertPolicy(projects={"Checkout Agent": ProjectPolicy(mute=True)}),
        AlertPolicy(exclude=["proj_a"]),
        AlertPolicy(exclude=["Checkout*"]),
        AlertPolicy(include=["proj_other"]),
    ],
)
def test_muted_and_excluded_projects_get_no_limit_alert(policy: AlertPolicy) -> None:
    """A project the policy mutes or filters out gets no limit alert, while the organization still does."""
    subjects = [figures("1000"), figures("1000", subject_id=ORGANIZATION, name="Organization")]
    assert [a.subject_id for a in evaluate_spend_limits(policy, subjects, MONTH)] == [ORGANIZATION]


def test_the_organization_is_kept_whatever_the_spike_setting() -> None:
    """The organization's limit is watched even when the organization spike rule is off."""
    subjects = [figures("950", subject_id=ORGANIZATION, name="Organization")]
    alerts = evaluate_spend_limits(AlertPolicy(organization=False), subjects, MONTH)
    assert [(a.subject_id, a.level) for a in alerts] == [(ORGANIZATION, "firing")]


def test_a_zero_limit_alert_has_no_ratio() -> None:
    """A zero limit is exceeded without a ratio (no division by zero)."""
    [alert] = evaluate_spend_limits(AlertPolicy(), [figures("5", limit="0")], MONTH)
    assert (alert.level, alert.ratio) == ("exceeded", None)


def details(subject: LimitFigures, data_time: dt.datetime = DATA_TIME) -> dict[str, str]:
    return dict(limit_details(subject, data_time))


def test_details_say_the_days_left_at_the_pace() -> None:
    """The message says the share spent, the days left at the recent pace, and the day it is reached."""
    said = details(figures("850", pace="40"))
    assert said["Spent of the limit"] == "85% this month"
    assert said["Limit reached"] == "in about 3.8 days at $40.00 a day (around Dec 6)"
    assert "OpenAI stops serving this project's API requests" in said["At the limit"]


def test_details_show_whole_days_from_ten_on() -> None:
    """Ten days or more are shown without a decimal."""
    said = details(figures("0", pace="40"))
    assert said["Limit reached"] == "in about 25 days at $40.00 a day (around Dec 27)"


def test_details_show_hours_within_a_day() -> None:
    """Less than a day left is said in hours, never as zero."""
    assert details(figures("990", pace="40"))["Limit reached"] == "in about 6 hours at $40.00 a day (around Dec 2)"
    assert details(figures("999.999", pace="40"))["Limit reached"].startswith("in about 1 hour at")


def test_details_once_reached_and_while_enforcing() -> None:
    """At the limit the message says it is reached; while enforced, that OpenAI enforces it now."""
    assert details(figures("1000", pace="40"))["Limit reached"] == "reached"
    assert details(figures("10", pace="40", enforcing=True))["Limit reached"] == "now: OpenAI is enforcing it"


def test_details_without_a_pace() -> None:
    """Without spend in the last closed days there is no pace, and the message says so instead of a date."""
    assert details(figures("900"))["Limit reached"] == "no spend in the last 7 closed days to project from"


def test_details_of_the_organization() -> None:
    """The organization's message says the organization's requests stop."""
    said = details(figures("900", pace="10", subject_id=ORGANIZATION, name="Organization"))
    assert "OpenAI stops serving the organization's API requests" in said["At the limit"]


def test_details_of_a_zero_limit_have_no_share() -> None:
    """A zero limit shows no share (no division by zero), and is reached."""
    said = details(figures("5", limit="0", pace="1"))
    assert "Spent of the limit" not in said
    assert said["Limit reached"] == "reached"


def test_details_of_a_trickle_far_from_the_limit_do_not_crash() -> None:
    """A pace so small that the limit is millennia away says it is not reached this month (no date overflows)."""
    said = details(figures("900", pace="0.000000001"))
    assert said["Limit reached"].startswith("not this month at $0.00 a day (the month to date starts again on ")


def test_details_of_a_limit_beyond_the_month_say_when_it_starts_again() -> None:
    """A pace that reaches the limit only after the month ends says the monthly limit starts again first."""
    said = details(figures("900", pace="1"))
    assert said["Limit reached"].startswith("not this month at $1.00 a day")


NOW = dt.datetime(2026, 12, 8, 12, tzinfo=dt.UTC)


def snapshot_totals() -> dict[dt.date, dict[str, Decimal]]:
    """December so far: proj_a $40 and proj_b $10 a day for 7 closed days, and today half of that."""
    totals = {dt.date(2026, 12, day): {"proj_a": D("40"), "proj_b": D("10")} for day in range(1, 8)}
    totals[NOW.date()] = {"proj_a": D("20"), "proj_b": D("5")}
    return totals


def test_limit_figures_from_a_snapshot() -> None:
    """Every project with a limit (by id), then the organization, with month to date, forecast and pace."""
    snapshot = build_snapshot(
        NOW,
        {"proj_a": "Checkout Agent"},
        snapshot_totals(),
        baseline_days=7,
        spend_limits={
            "proj_a": SpendLimit(D("500"), "inactive"),
            "proj_idle": SpendLimit(D("100"), "enforcing"),
            None: SpendLimit(D("10000"), "inactive"),
        },
    )
    project, idle, organization = limit_figures(snapshot)
    # 7 closed days at $40 and $20 today; 23 days after today at $40, today counted at its pace.
    assert project == LimitFigures("proj_a", "Checkout Agent", D("300"), D("1240"), D("40"), D("500"), False)
    assert idle == LimitFigures("proj_idle", "proj_idle", D(0), D(0), D(0), D("100"), True)
    assert organization == LimitFigures(ORGANIZATION, "Organization", D("375"), D("1550"), D("50"), D("10000"), False)
    assert days_to_limit(project) == D(5)


def test_limit_figures_leave_out_projects_without_a_limit() -> None:
    """A project without a limit, and an organization without one, have no figures."""
    snapshot = build_snapshot(
        NOW, {}, snapshot_totals(), baseline_days=7, spend_limits={"proj_b": SpendLimit(D("100"), "inactive")}
    )
    assert [f.subject_id for f in limit_figures(snapshot)] == ["proj_b"]
    assert limit_figures(build_snapshot(NOW, {}, snapshot_totals(), baseline_days=7)) == []


def test_a_project_at_85_percent_gets_one_firing_alert() -> None:
    """From a snapshot: the project at 85% of its limit fires, the far one and the one without a limit do not."""
    snapshot = build_snapshot(
        NOW,
        {"proj_a": "Checkout Agent"},
        snapshot_totals(),
        baseline_days=7,
        spend_limits={"proj_a": SpendLimit(D("352.95"), "inactive"), "proj_b": SpendLimit(D("100000"), "inactive")},
    )
    alerts = evaluate_spend_limits(AlertPolicy(), limit_figures(snapshot), snapshot.day.replace(day=1))
    assert [(a.subject_id, a.level, a.since) for a in alerts] == [("proj_a", "firing", MONTH)]
