"""Static checks and promtool unit tests of the shipped alert rules and Alertmanager configuration.

The promtool unit tests are generated from tests/alert_cases.yaml, the table that also drives the
built-in engine's tests, so the rule file and the engine cannot drift apart.
"""

from __future__ import annotations

import subprocess
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.stack import require_binary

ROOT = Path(__file__).resolve().parent.parent
RULES = ROOT / "deploy" / "rules" / "openai-cost-exporter.rules.yml"
ALERTMANAGER_CONFIG = ROOT / "deploy" / "alertmanager" / "alertmanager.yml"
CASES = yaml.safe_load((Path(__file__).parent / "alert_cases.yaml").read_text(encoding="utf-8"))
RUNBOOKS = {r["alert"]: r["annotations"]["runbook"] for r in yaml.safe_load(RULES.read_text())["groups"][0]["rules"]}
RUNBOOK = RUNBOOKS["OpenAICostSpike"]  # shared by the billed cost rules and self-monitoring
VALUES = "{v} {v} {v}"  # three samples one minute apart; every alert is checked at 1m
Case = dict[str, Any]
Alert = dict[str, Any]

pytestmark = pytest.mark.stack


def run(*argv: str) -> subprocess.CompletedProcess[str]:
    """Run a binary from PATH (failing clearly when it is missing), capturing its output."""
    return subprocess.run([require_binary(argv[0]), *argv[1:]], capture_output=True, text=True, timeout=60, check=False)


def usd(amount: str) -> str:
    """How the rule templates print money: `$x.xx`."""
    return f"${Decimal(amount):.2f}"


def project_of(case: Case) -> dict[str, str]:
    """The fake project a case runs in (a quote in the name checks template escaping)."""
    return {"project_id": f"proj_{case['name']}", "project": f'Case "{case["name"]}"'}


def series(metric: str, labels: dict[str, str], value: str) -> dict[str, str]:
    """One promtool input series with a constant value."""
    selector = ",".join(f"{k}={yaml_quote(v)}" for k, v in labels.items())
    return {"series": f"{metric}{{{selector}}}", "values": VALUES.format(v=value)}


def yaml_quote(value: str) -> str:
    """A PromQL string literal."""
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def project_alert(
    severity: str, project: dict[str, str], summary: str, desc: str, runbook: str = RUNBOOK, **notes: str
) -> Alert:
    """An expected per-project alert with its rendered annotations."""
    name, pid = project["project"], project["project_id"]
    annotations = {
        "summary": f"{summary} in project {name}",
        "description": desc.format(who=f"{name} ({pid})"),
        **notes,
        "runbook": runbook,
    }
    return {
        "exp_labels": {**project, "severity": severity, "scope": "project"},
        "exp_annotations": annotations,
    }


def org_alert(severity: str, summary: str, desc: str, runbook: str = RUNBOOK, **notes: str) -> Alert:
    """An expected organization-wide alert with its rendered annotations."""
    annotations = {
        "summary": f"{summary} for the whole organization",
        "description": desc.format(who="the organization"),
        **notes,
        "runbook": runbook,
    }
    return {"exp_labels": {"severity": severity, "scope": "organization"}, "exp_annotations": annotations}


def check(alertname: str, alerts: list[Alert]) -> dict[str, Any]:
    """One promtool alert_rule_test at 1m."""
    return {"eval_time": "1m", "alertname": alertname, "exp_alerts": alerts}


def spike_test(case: Case) -> dict[str, Any]:
    """promtool test group: one project's today and baseline; the org sums equal the project's."""
    project, today, baseline = project_of(case), case["today"], case["baseline"]
    notes = {"value": usd(today), "reference": f"baseline {usd(baseline)}" if baseline is not None else ""}
    usual = (
        "what it usually spends by this hour (the median of the same kind of day) and more than three spreads above it"
    )
    desc = f"Today (UTC) so far {{who}} spent {usd(today)}, more than 1.5x {usual}."
    org_desc = (
        f"Today (UTC) so far the organization spent {usd(today)}, more than 1.5x what its projects usually spend"
        " by this hour."
    )
    summary = "OpenAI cost spike"
    fires = bool(case["fires"])
    org_fires = bool(case.get("org_fires", fires))  # the organization's rule has no spread
    return {
        "interval": "1m",
        "input_series": [
            series("openai_daily_cost_usd", project, today),
            # a usual day not known (baseline null): the exporter publishes neither series
            *(
                [
                    series("openai_daily_cost_baseline_usd", project, baseline),
                    series("openai_daily_cost_spread_usd", project, case.get("spread", "0")),
                ]
                if baseline is not None
                else []
            ),
        ],
        "alert_rule_test": [
            check("OpenAICostSpike", [project_alert("warning", project, summary, desc, **notes)] * fires),
            check("OpenAIOrganizationCostSpike", [org_alert("warning", summary, org_desc, **notes)] * org_fires),
        ],
    }


def runaway_test(case: Case) -> dict[str, Any]:
    """promtool test group: one project's estimated hourly rate and usual; never an organization-wide alert."""
    project, rate, usual = project_of(case), case["rate"], case["usual"]
    notes = {"value": f"{usd(rate)}/h estimated", "reference": f"usual {usd(usual)}/h" if usual is not None else ""}
    desc = (
        "ESTIMATE from token usage, not billed costs: over the recent minutes {who} spent about "
        f"{usd(rate)} per hour, more than 3x its usual for these minutes of the day (median of the last 7 days) "
        f"and at least $5.00 per hour. A day at this rate would cost about {usd(str(24 * Decimal(rate)))}."
    )
    summary, runbook = "Estimated runaway OpenAI spend", RUNBOOKS["OpenAIRunawaySpend"]
    alert = project_alert("critical", project, summary, desc, runbook, **notes)
    return {
        "interval": "1m",
        "input_series": [
            series("openai_estimated_cost_usd_per_hour", project, rate),
            # a usual not known (too little usage history): the exporter publishes no usual series
            *([series("openai_estimated_usual_cost_usd_per_hour", project, usual)] if usual is not None else []),
        ],
        "alert_rule_test": [check("OpenAIRunawaySpend", [alert] * bool(case["fires"]))],
    }


def daily_budget_test(case: Case) -> dict[str, Any]:
    """promtool test group: one project's today against equal project and organization daily budgets."""
    project, today, budget = project_of(case), case["today"], case["budget"]
    notes = {"value": usd(today), "reference": f"daily budget {usd(budget)}"}
    desc = f"Today (UTC) so far {{who}} spent {usd(today)}, over its daily budget."
    summary = "OpenAI daily budget exceeded"
    alerts = [
        project_alert("critical", project, summary, desc, **notes),
        org_alert("critical", summary, desc, **notes),
    ]
    return {
        "interval": "1m",
        "input_series": [
            series("openai_daily_cost_usd", project, today),
            series("openai_cost_budget_usd", {"period": "daily", **project}, budget),
            series("openai_cost_budget_usd", {"period": "daily"}, budget),
        ],
        "alert_rule_test": [check("OpenAIDailyBudgetExceeded", alerts * bool(case["fires"]))],
    }


def monthly_alerts(case: Case, alertname: str) -> list[Alert]:
    """The project and organization alerts `alertname` must raise for a monthly_budget case."""
    project, budget = project_of(case), case["budget"]
    notes = {"reference": f"monthly budget {usd(budget)}"}
    if alertname == "OpenAIMonthlyBudgetExceeded":
        severity, summary, value = "critical", "OpenAI monthly budget exceeded", usd(case["month_to_date"])
        desc = f"This month so far {{who}} spent {value}, over its monthly budget."
    else:
        severity, summary, value = (
            "warning",
            "OpenAI monthly budget forecast to be exceeded",
            usd(case["forecast"]),
        )
        desc = f"At this month's pace {{who}} will spend {value} by the end of the month, over its monthly budget."
    return [
        project_alert(severity, project, summary, desc, value=value, **notes),
        org_alert(severity, summary, desc, value=value, **notes),
    ]


def monthly_budget_test(case: Case) -> dict[str, Any]:
    """promtool test group: month to date and forecast against equal project and organization budgets.

    Level "exceeded" fires Exceeded and Forecast (a linear forecast is never below the month to date);
    Alertmanager's inhibition then leaves only Exceeded, the single level the built-in engine reports.
    """
    project, budget, level = project_of(case), case["budget"], case["level"]
    exceeded, forecast = "OpenAIMonthlyBudgetExceeded", "OpenAIMonthlyBudgetForecast"
    return {
        "interval": "1m",
        "input_series": [
            series("openai_month_to_date_cost_usd", project, case["month_to_date"]),
            series("openai_month_forecast_cost_usd", project, case["forecast"]),
            series("openai_cost_budget_usd", {"period": "monthly", **project}, budget),
            series("openai_cost_budget_usd", {"period": "monthly"}, budget),
        ],
        "alert_rule_test": [
            check(exceeded, monthly_alerts(case, exceeded) if level == "exceeded" else []),
            check(forecast, monthly_alerts(case, forecast) if level in ("forecast", "exceeded") else []),
        ],
    }


REACHED, NEAR, FORECAST = "OpenAIHardSpendLimitReached", "OpenAIHardSpendLimitNear", "OpenAIHardSpendLimitForecast"
#: The rule file's share of the hard limit for "near" (the engine's default `spend_limit_share`).
SHARE = Decimal("0.8")


def limit_alerts_due(case: Case) -> set[str]:
    """The hard limit alerts the rule file raises for a spend_limit case: the table's level, and below it each
    lower level whose own condition holds (Alertmanager inhibits those, leaving the engine's single level).
    The table's level always fires and the levels above it never do, so a wrong threshold shows."""
    level = case["level"]
    mtd, forecast = Decimal(case["month_to_date"]), Decimal(case["forecast"])
    due = set()
    if level == "exceeded":
        due.add(REACHED)
    if level == "firing" or (level == "exceeded" and mtd > SHARE * Decimal(case["limit"])):
        due.add(NEAR)
    if level == "forecast" or (level in ("firing", "exceeded") and forecast > Decimal(case["limit"])):
        due.add(FORECAST)
    return due


def limit_alerts(case: Case, alertname: str) -> list[Alert]:
    """The project and organization alerts `alertname` raises for a spend_limit case, annotations rendered."""
    project, limit, mtd = project_of(case), case["limit"], case["month_to_date"]
    left = usd(str(max(Decimal(limit) - Decimal(mtd), Decimal(0))))  # the rule clamps it at 0 once reached
    stops = "OpenAI stops serving {whose} API requests"
    if alertname == REACHED:
        severity, summary, value = "critical", "OpenAI hard spend limit reached", usd(mtd)
        how = "and OpenAI is enforcing its hard spend limit" if case["enforcing"] else "at or over its hard spend limit"
        desc = (
            f"This month so far {{who}} spent {value}, {how}: {stops} until the month ends or someone raises the limit."
        )
    elif alertname == NEAR:
        severity, summary, value = "critical", "OpenAI hard spend limit near", usd(mtd)
        desc = (
            f"This month so far {{who}} spent {value}, over 80% of its hard spend limit: about {left} is left before"
            f" {stops} (until the month ends or someone raises the limit)."
        )
    else:
        severity, summary, value = "warning", "OpenAI hard spend limit forecast to be reached", usd(case["forecast"])
        desc = (
            f"At this month's pace {{who}} will spend {value} by the end of the month, over its hard spend limit:"
            f" about {left} is left before {stops} (until the month ends or someone raises the limit)."
        )
    notes = {"value": value, "reference": f"hard limit {usd(limit)}"}
    runbook = RUNBOOKS[alertname]
    return [
        project_alert(severity, project, summary, desc.replace("{whose}", "the project's"), runbook, **notes),
        org_alert(severity, summary, desc.replace("{whose}", "the organization's"), runbook, **notes),
    ]


def spend_limit_test(case: Case) -> dict[str, Any]:
    """promtool test group: month to date and forecast against equal project and organization hard limits, as the
    exporter writes them (`scope`, the organization's with empty project labels); no limit series for a case
    without a limit."""
    project, limit = project_of(case), case["limit"]
    enforcing = "1" if case["enforcing"] else "0"
    limits = []
    if limit is not None:
        for labels in ({"scope": "project", **project}, {"scope": "organization", "project_id": "", "project": ""}):
            limits += [
                series("openai_spend_limit_usd", labels, limit),
                series("openai_spend_limit_enforcing", labels, enforcing),
            ]
    due = limit_alerts_due(case)
    return {
        "interval": "1m",
        "input_series": [
            series("openai_month_to_date_cost_usd", project, case["month_to_date"]),
            series("openai_month_forecast_cost_usd", project, case["forecast"]),
            *limits,
        ],
        "alert_rule_test": [
            check(name, limit_alerts(case, name) if name in due else []) for name in (REACHED, NEAR, FORECAST)
        ],
    }


STALE = {
    "summary": "openai-cost-exporter has not completed a cycle for over 15 minutes",
    "description": "No successful collection cycle for 15 minutes or more, or no exporter metrics at all: "
    "cost alerts are based on stale figures. Check the exporter's log and "
    "openai_cost_exporter_errors_total{stage}.",
    "runbook": RUNBOOK,
}
ERRORS = {
    "summary": "openai-cost-exporter keeps failing at stage costs",
    "description": 'openai_cost_exporter_errors_total{stage="costs"} has been increasing for 15 minutes. '
    "Check the exporter's log (an invalid admin key, the OpenAI API or the push target).",
    "runbook": RUNBOOK,
}


def self_monitoring_tests() -> list[dict[str, Any]]:
    """Hand-written groups for the exporter's own health: fresh, stuck, absent, erroring, recovered."""
    job = {"job": "openai_cost_exporter"}
    last_success, errors = (
        "openai_cost_exporter_last_success_timestamp_seconds",
        "openai_cost_exporter_errors_total",
    )
    stale = [{"exp_labels": {**job, "severity": "warning"}, "exp_annotations": STALE}]
    erroring = [{"exp_labels": {**job, "stage": "costs", "severity": "warning"}, "exp_annotations": ERRORS}]

    def group(input_series: list[dict[str, str]], *checks: tuple[str, str, list[Alert]]) -> dict[str, Any]:
        tests = [{"eval_time": t, "alertname": name, "exp_alerts": alerts} for t, name, alerts in checks]
        return {"interval": "1m", "input_series": input_series, "alert_rule_test": tests}

    fresh = {"series": f'{last_success}{{job="openai_cost_exporter"}}', "values": "0+60x40"}
    stuck = {"series": f'{last_success}{{job="openai_cost_exporter"}}', "values": "0x40"}
    failing = {"series": f'{errors}{{job="openai_cost_exporter",stage="costs"}}', "values": "0+1x40"}
    flat = {"series": f'{errors}{{job="openai_cost_exporter",stage="costs"}}', "values": "3x40"}
    stale_absent = [{"exp_labels": {"severity": "warning"}, "exp_annotations": STALE}]
    return [
        group([fresh, flat], ("30m", "OpenAICostExporterStale", []), ("30m", "OpenAICostExporterErrors", [])),
        group([stuck], ("10m", "OpenAICostExporterStale", []), ("25m", "OpenAICostExporterStale", stale)),
        group([flat], ("3m", "OpenAICostExporterStale", []), ("6m", "OpenAICostExporterStale", stale_absent)),
        group([failing], ("10m", "OpenAICostExporterErrors", []), ("30m", "OpenAICostExporterErrors", erroring)),
    ]


def write_promtool_tests(rules: Path, dest: Path) -> Path:
    """A promtool rule-test file for `rules`: every case of alert_cases.yaml, then self-monitoring."""
    tests = [
        *(spike_test(case) for case in CASES["spike"]),
        *(runaway_test(case) for case in CASES["runaway"]),
        *(daily_budget_test(case) for case in CASES["daily_budget"]),
        *(monthly_budget_test(case) for case in CASES["monthly_budget"]),
        *(spend_limit_test(case) for case in CASES["spend_limit"]),
        *self_monitoring_tests(),
    ]
    document = {"rule_files": [str(rules)], "evaluation_interval": "1m", "tests": tests}
    dest.write_text(yaml.safe_dump(document, sort_keys=False), encoding="utf-8")
    return dest


def test_promtool_accepts_the_rule_file() -> None:
    """promtool check rules accepts the shipped rule file."""
    result = run("promtool", "check", "rules", str(RULES))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS: 17 rules found" in result.stdout


def test_vmalert_dry_run_accepts_the_rule_file() -> None:
    """vmalert -dryRun validates the shipped rules' MetricsQL and templates."""
    result = run("vmalert", "-dryRun", f"-rule={RULES}")
    assert result.returncode == 0, result.stdout + result.stderr


def test_vmalert_dry_run_rejects_a_broken_rule_file(tmp_path: Path) -> None:
    """vmalert -dryRun fails on a syntax error, so the check above can fail."""
    broken = tmp_path / "broken.rules.yml"
    broken.write_text(RULES.read_text().replace("and openai_daily_cost_usd >= 1", "and >= 1", 1))
    result = run("vmalert", "-dryRun", f"-rule={broken}")
    assert result.returncode != 0
    assert "OpenAICostSpike" in result.stdout + result.stderr


def test_amtool_accepts_the_alertmanager_config() -> None:
    """amtool check-config accepts the shipped Alertmanager configuration and its Slack templates."""
    result = run("amtool", "check-config", str(ALERTMANAGER_CONFIG))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "4 inhibit rules" in result.stdout


def test_alertmanager_config_ships_no_webhook_url() -> None:
    """The shipped config reads the Slack webhook (a secret) from a file instead of containing it."""
    config = yaml.safe_load(ALERTMANAGER_CONFIG.read_text())
    slack = config["receivers"][0]["slack_configs"][0]
    assert "api_url" not in slack
    assert slack["api_url_file"] == "/etc/alertmanager/slack_webhook_url"
    assert slack["send_resolved"] is True
    assert config["route"]["group_by"] == ["alertname", "project_id"]


def test_rules_pass_the_promtool_tests_generated_from_alert_cases(tmp_path: Path) -> None:
    """Every case of tests/alert_cases.yaml fires (or not) exactly as the table says, with its annotations."""
    result = run("promtool", "test", "rules", str(write_promtool_tests(RULES, tmp_path / "rules_test.yml")))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout


@pytest.mark.parametrize(
    ("original", "mutant", "alertname"),
    [
        ("> 1.5 * openai_daily_cost_baseline_usd", "> 2 * openai_daily_cost_baseline_usd", "OpenAICostSpike"),
        ("and openai_daily_cost_usd >= 1", "and openai_daily_cost_usd > 1", "OpenAICostSpike"),
        (
            '> on (project_id) group_left () openai_cost_budget_usd{period="daily"',
            '>= on (project_id) group_left () openai_cost_budget_usd{period="daily"',
            "OpenAIDailyBudgetExceeded",
        ),
        (
            "openai_month_to_date_cost_usd\n",
            "openai_month_forecast_cost_usd\n",
            "OpenAIMonthlyBudgetExceeded",
        ),
        ("> 900", "> 1800", "OpenAICostExporterStale"),
        (
            "> 3 * openai_estimated_usual_cost_usd_per_hour",
            ">= 3 * openai_estimated_usual_cost_usd_per_hour",
            "OpenAIRunawaySpend",
        ),
        (
            "and openai_estimated_cost_usd_per_hour >= 5",
            "and openai_estimated_cost_usd_per_hour >= 6",
            "OpenAIRunawaySpend",
        ),
        (
            "and openai_estimated_cost_usd_per_hour >= 5",
            "and openai_estimated_cost_usd_per_hour > 5",
            "OpenAIRunawaySpend",
        ),
        (
            "and openai_estimated_cost_usd_per_hour >= 5",
            "and openai_estimated_cost_usd_per_hour >= 0",
            "OpenAIRunawaySpend",
        ),
        (
            '> on (project_id) group_left () (0.8 * openai_spend_limit_usd{scope="project"})',
            '>= on (project_id) group_left () (0.8 * openai_spend_limit_usd{scope="project"})',
            NEAR,
        ),
        ('(0.8 * openai_spend_limit_usd{scope="project"})', '(0.9 * openai_spend_limit_usd{scope="project"})', NEAR),
        (
            '(0.8 * openai_spend_limit_usd{scope="organization"})',
            '(0.9 * openai_spend_limit_usd{scope="organization"})',
            NEAR,
        ),
        (
            '>= on (project_id) group_left () openai_spend_limit_usd{scope="project"}',
            '> on (project_id) group_left () openai_spend_limit_usd{scope="project"}',
            REACHED,
        ),
        (
            '>= ignoring (scope) openai_spend_limit_usd{scope="organization"}',
            '> ignoring (scope) openai_spend_limit_usd{scope="organization"}',
            REACHED,
        ),
        (
            'openai_spend_limit_enforcing{scope="project"} == 1',
            'openai_spend_limit_enforcing{scope="project"} == 2',
            REACHED,
        ),
        (
            "openai_month_forecast_cost_usd\n            > on (project_id) group_left () openai_spend_limit_usd",
            "openai_month_to_date_cost_usd\n            > on (project_id) group_left () openai_spend_limit_usd",
            FORECAST,
        ),
    ],
    ids=[
        "spike-ratio-2",
        "spike-floor-strict",
        "daily-budget-not-strict",
        "monthly-uses-forecast",
        "stale-30m",
        "runaway-ratio-not-strict",
        "runaway-floor-6",
        "runaway-floor-strict",
        "runaway-no-floor",
        "limit-near-not-strict",
        "limit-near-share-0.9",
        "limit-organization-near-share-0.9",
        "limit-reached-strict",
        "limit-organization-reached-strict",
        "limit-reached-ignores-enforcing",
        "limit-forecast-uses-month-to-date",
    ],
)
def test_generated_promtool_tests_catch_a_wrong_rule(
    tmp_path: Path, original: str, mutant: str, alertname: str
) -> None:
    """A rule with a changed threshold or operator makes the generated promtool tests fail."""
    text = RULES.read_text()
    assert text.count(original) >= 1
    wrong = tmp_path / "wrong.rules.yml"
    wrong.write_text(text.replace(original, mutant, 1))
    result = run("promtool", "test", "rules", str(write_promtool_tests(wrong, tmp_path / "rules_test.yml")))
    assert result.returncode != 0
    assert f"alertname: {alertname}" in result.stdout + result.stderr


def test_a_missing_binary_fails_naming_its_debian_package(monkeypatch: pytest.MonkeyPatch) -> None:
    """Without the binary on PATH the test fails with the apt-get line to fix it, not a skip."""
    monkeypatch.setenv("PATH", "")
    with pytest.raises(pytest.fail.Exception, match="apt-get install --no-install-recommends victoria-metrics"):
        require_binary("vmalert")
