"""End to end through the real stack: VictoriaMetrics -> vmalert (shipped rules) -> Alertmanager (shipped
config) -> a fake Slack webhook, with the exporter's exact exposition format."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.stack import Stack, VictoriaMetrics, bound_addresses, monitoring_stack, wait_until

ROOT = Path(__file__).resolve().parent.parent
RULES = ROOT / "deploy" / "rules" / "openai-cost-exporter.rules.yml"
ALERTMANAGER_CONFIG = ROOT / "deploy" / "alertmanager" / "alertmanager.yml"
JOB = "openai_cost_exporter"
TIMEOUT = 15.0  # seconds per expected Slack post; measured 0.5-2.4 s on the CI machine
RERANKER = 'project_id="proj_x",project="Search \\"Reranker\\""'
BILLING = 'project_id="proj_m",project="Billing"'

pytestmark = pytest.mark.stack


def feed(vm: VictoriaMetrics, text: str) -> None:
    """Deliver exporter output to VictoriaMetrics as the exporter's push does, and make it searchable."""
    vm.push(text, {"job": JOB})
    vm.force_flush()


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    """The whole stack, started once for this module and stopped afterwards."""
    with monitoring_stack(tmp_path_factory.mktemp("stack"), RULES, ALERTMANAGER_CONFIG) as running:
        yield running


def am_alerts(stack: Stack, alertname: str) -> list[dict[str, Any]]:
    """Alertmanager's current alerts named `alertname` (API v2), with their inhibition status."""
    url = f"{stack.alertmanager.url}/api/v2/alerts"
    response = httpx.get(url, params={"filter": f'alertname="{alertname}"'}, trust_env=False, timeout=5)
    response.raise_for_status()
    return list(response.json())


def test_every_process_listens_only_on_loopback(stack: Stack) -> None:
    """Each stack process has sockets bound, and only to 127.0.0.1 (no cluster or 0.0.0.0 listener)."""
    for service in stack.services:
        assert bound_addresses(service.process.pid) == {"127.0.0.1"}, service.name


def test_pushed_series_keep_labels_and_are_queryable_at_once(stack: Stack) -> None:
    """A flushed push is visible to an instant query and to /export with the quoted name and job label."""
    labels = 'project_id="proj_q",project="Q \\"quoted\\" \\\\ name"'
    feed(stack.vm, f"openai_daily_cost_baseline_usd{{{labels}}} 0.25\n")
    [sample] = stack.vm.query('openai_daily_cost_baseline_usd{project_id="proj_q"}')
    assert sample["value"][1] == "0.25"
    [series] = stack.vm.export('openai_daily_cost_baseline_usd{project_id="proj_q"}')
    assert series["metric"]["project"] == 'Q "quoted" \\ name'
    assert series["metric"]["job"] == JOB
    assert series["values"] == [0.25]


def test_cost_spike_reaches_slack_and_resolves(stack: Stack) -> None:
    """A pushed spike posts FIRING with project, value and baseline to Slack; normal values post RESOLVED."""
    start = time.monotonic()
    feed(
        stack.vm,
        f"openai_daily_cost_usd{{{RERANKER}}} 4.0\nopenai_daily_cost_baseline_usd{{{RERANKER}}} 1.0\n",
    )
    firing = stack.slack.wait_for_title("FIRING: OpenAICostSpike", TIMEOUT, stack.log_tails)
    fired_after = time.monotonic() - start
    assert firing["title"] == 'FIRING: OpenAICostSpike in Search "Reranker"'
    assert '*Search "Reranker"* (`proj_x`): $4.00 (baseline $1.00) [warning]' in firing["text"]

    start = time.monotonic()
    feed(stack.vm, f"openai_daily_cost_usd{{{RERANKER}}} 1.2\n")
    resolved = stack.slack.wait_for_title("RESOLVED: OpenAICostSpike", TIMEOUT, stack.log_tails)
    resolved_after = time.monotonic() - start
    assert resolved["color"] == "good"
    print(f"push -> FIRING post: {fired_after:.2f} s; push -> RESOLVED post: {resolved_after:.2f} s")


def test_monthly_budget_exceeded_inhibits_the_forecast(stack: Stack) -> None:
    """Alertmanager holds back the forecast alert while the same project's budget is exceeded."""
    budget = f'openai_cost_budget_usd{{period="monthly",{BILLING}}} 1000\n'
    forecast = f"openai_month_forecast_cost_usd{{{BILLING}}} 1500\n"
    feed(stack.vm, f"openai_month_to_date_cost_usd{{{BILLING}}} 1000.5\n{forecast}{budget}")
    exceeded = stack.slack.wait_for_title("FIRING: OpenAIMonthlyBudgetExceeded", TIMEOUT, stack.log_tails)
    assert "*Billing* (`proj_m`): $1000.50 (monthly budget $1000.00) [critical]" in exceeded["text"]

    def forecast_inhibited() -> bool:
        alerts = am_alerts(stack, "OpenAIMonthlyBudgetForecast")
        return bool(alerts) and all(alert["status"]["inhibitedBy"] for alert in alerts)

    wait_until(forecast_inhibited, TIMEOUT, "the forecast alert to be inhibited", stack.log_tails)
    assert not [t for t in stack.slack.titles() if "OpenAIMonthlyBudgetForecast" in t]

    # Once the month to date is back under budget, the same forecast alert does reach Slack.
    feed(stack.vm, f"openai_month_to_date_cost_usd{{{BILLING}}} 300\n{forecast}{budget}")
    released = stack.slack.wait_for_title("FIRING: OpenAIMonthlyBudgetForecast", TIMEOUT, stack.log_tails)
    assert "*Billing* (`proj_m`): $1500.00 (monthly budget $1000.00) [warning]" in released["text"]
