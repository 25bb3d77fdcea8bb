"""End to end through the real stack: the exporter CLI (against the fake OpenAI organization) -> VictoriaMetrics
-> vmalert (shipped rules) -> Alertmanager (shipped config) -> a fake Slack webhook.

The main test runs `run --once` as a user would; the others push hand-written exposition text in the exporter's
exact format, to check rule and template semantics (quoted names, budgets, inhibition) the fake cannot stage."""

from __future__ import annotations

import datetime as dt
import re
import time
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx
import pytest

from openai_cost_exporter.core.clock import FrozenClock
from openai_cost_exporter.fake.api import FakeAdminAPI
from openai_cost_exporter.fake.org import FakeOrg, FakeProject
from tests.clirun import ADMIN_KEY, baseline_of, cli_now, run_once, set_today
from tests.moments import DEFAULT, WEDNESDAY_2000
from tests.stack import Stack, VictoriaMetrics, bound_addresses, monitoring_stack, wait_until

ROOT = Path(__file__).resolve().parent.parent
RULES = ROOT / "deploy" / "rules" / "openai-cost-exporter.rules.yml"
ALERTMANAGER_CONFIG = ROOT / "deploy" / "alertmanager" / "alertmanager.yml"
JOB = "openai_cost_exporter"
TIMEOUT = 15.0  # seconds per expected Slack post; measured 0.5-2.4 s on the CI machine
RERANKER = 'project_id="proj_x",project="Search \\"Reranker\\""'
BILLING = 'project_id="proj_m",project="Billing"'
LOOPING = 'project_id="proj_r",project="Looping Agent"'

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


def _watched_project(org: FakeOrg) -> FakeProject:
    """An active project with a plain name (an exact Slack title) and a baseline well over the 1 USD floor."""
    return next(
        p
        for p in org.projects
        if not p.archived and p.name and re.fullmatch(r"[A-Za-z ]+", p.name) and baseline_of(org, p.id) > 2
    )


@pytest.fixture(scope="module")
def org() -> FakeOrg:
    """A fake organization frozen at 20:00 UTC of a weekday, without the built-in spiking project."""
    return FakeOrg.generate(seed=3, project_count=25, clock=FrozenClock(WEDNESDAY_2000), spike_project=False)


@pytest.fixture(scope="module")
def api(org: FakeOrg) -> Iterator[FakeAdminAPI]:
    """The fake OpenAI Admin API serving `org` on 127.0.0.1."""
    with FakeAdminAPI(org, admin_key=ADMIN_KEY) as fake:
        yield fake


def export_cycle(
    api: FakeAdminAPI, vm: VictoriaMetrics, state_dir: Path, now: dt.datetime | None = None, *, usage: bool = False
) -> float:
    """One `run --once` of the exporter CLI pushing into VictoriaMetrics, then a flush; returns its seconds."""
    start = time.monotonic()
    # Without usage the pushed baseline is the usual full day the case expects (with usage: scaled to the hour);
    # the runaway case needs usage, its estimates come from nowhere else.
    flags = () if usage else ("--no-usage",)
    result = run_once(api.base_url, state_dir, "--push-url", vm.import_url, *flags, now=now)
    assert result.returncode == 0, result.output
    assert ADMIN_KEY not in result.output and "Traceback" not in result.output
    vm.force_flush()  # new series are otherwise searchable only after 4-10 s (monitoring-stack.md §2)
    return time.monotonic() - start


def test_exporter_spike_reaches_slack_and_resolves(
    stack: Stack, org: FakeOrg, api: FakeAdminAPI, tmp_path: Path
) -> None:
    """The exporter CLI pushes a project at 4x its baseline: vmalert and Alertmanager post FIRING to Slack with the
    fake's figures; once the exporter pushes the project back at its baseline, RESOLVED arrives."""
    project = _watched_project(org)
    baseline = baseline_of(org, project.id)
    set_today(org, project.id, 4 * baseline)
    cycle = export_cycle(api, stack.vm, tmp_path, now=cli_now(org))
    pushed = time.monotonic()
    firing = stack.slack.wait_for_title(f"FIRING: OpenAICostSpike in {project.name}", TIMEOUT, stack.log_tails)
    fired_after = time.monotonic() - pushed
    today = float((4 * baseline).quantize(Decimal("0.000001")))
    # The baseline as the exporter computed and pushed it (what it means is baselines.py's business, not this
    # test's: here it only has to reach Slack intact).
    [pushed_baseline] = stack.vm.query(f'openai_daily_cost_baseline_usd{{project_id="{project.id}"}}')
    shown = float(pushed_baseline["value"][1])
    assert today > 1.5 * shown
    expected = f"*{project.name}* (`{project.id}`): ${today:.2f} (baseline ${shown:.2f}) [warning]"
    assert expected in firing["text"]
    assert firing["color"] == "danger"

    set_today(org, project.id, Decimal(str(shown)))
    export_cycle(api, stack.vm, tmp_path, now=cli_now(org))
    pushed = time.monotonic()
    resolved = stack.slack.wait_for_title(f"RESOLVED: OpenAICostSpike in {project.name}", TIMEOUT, stack.log_tails)
    resolved_after = time.monotonic() - pushed
    assert resolved["color"] == "good"
    print(
        f"exporter run --once: {cycle:.2f} s; its push -> FIRING post: {fired_after:.2f} s; "
        f"push of normal values -> RESOLVED post: {resolved_after:.2f} s"
    )


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


def test_hand_written_spike_with_quoted_name_reaches_slack_and_resolves(stack: Stack) -> None:
    """A spike of a project whose name has quotes posts FIRING with the name, value and baseline intact;
    normal values post RESOLVED."""
    start = time.monotonic()
    feed(
        stack.vm,
        f"openai_daily_cost_usd{{{RERANKER}}} 4.0\nopenai_daily_cost_baseline_usd{{{RERANKER}}} 1.0\n",
    )
    firing = stack.slack.wait_for_title('FIRING: OpenAICostSpike in Search "Reranker"', TIMEOUT, stack.log_tails)
    fired_after = time.monotonic() - start
    assert firing["title"] == 'FIRING: OpenAICostSpike in Search "Reranker"'
    assert '*Search "Reranker"* (`proj_x`): $4.00 (baseline $1.00) [warning]' in firing["text"]

    start = time.monotonic()
    feed(stack.vm, f"openai_daily_cost_usd{{{RERANKER}}} 1.2\n")
    resolved = stack.slack.wait_for_title('RESOLVED: OpenAICostSpike in Search "Reranker"', TIMEOUT, stack.log_tails)
    resolved_after = time.monotonic() - start
    assert resolved["color"] == "good"
    print(f"push -> FIRING post: {fired_after:.2f} s; push -> RESOLVED post: {resolved_after:.2f} s")


def test_monthly_budget_exceeded_inhibits_the_forecast(stack: Stack) -> None:
    """Alertmanager holds back the forecast alert while the same project's budget is exceeded."""
    budget = f'openai_cost_budget_usd{{period="monthly",{BILLING}}} 1000\n'
    forecast = f"openai_month_forecast_cost_usd{{{BILLING}}} 1500\n"
    feed(stack.vm, f"openai_month_to_date_cost_usd{{{BILLING}}} 1000.5\n{forecast}{budget}")
    exceeded = stack.slack.wait_for_title("FIRING: OpenAIMonthlyBudgetExceeded in Billing", TIMEOUT, stack.log_tails)
    assert "*Billing* (`proj_m`): $1000.50 (monthly budget $1000.00) [critical]" in exceeded["text"]

    def forecast_inhibited() -> bool:
        alerts = am_alerts(stack, "OpenAIMonthlyBudgetForecast")
        return bool(alerts) and all(alert["status"]["inhibitedBy"] for alert in alerts)

    wait_until(forecast_inhibited, TIMEOUT, "the forecast alert to be inhibited", stack.log_tails)
    assert not [t for t in stack.slack.titles() if "OpenAIMonthlyBudgetForecast" in t]

    # Once the month to date is back under budget, the same forecast alert does reach Slack.
    feed(stack.vm, f"openai_month_to_date_cost_usd{{{BILLING}}} 300\n{forecast}{budget}")
    released = stack.slack.wait_for_title("FIRING: OpenAIMonthlyBudgetForecast in Billing", TIMEOUT, stack.log_tails)
    assert "*Billing* (`proj_m`): $1500.00 (monthly budget $1000.00) [warning]" in released["text"]


@pytest.fixture(scope="module")
def runaway_org() -> FakeOrg:
    """A second fake organization, frozen at a weekday afternoon, whose "Agent Loop" runs at 10x its rate since 40
    minutes ago: the usage endpoints show it, billed costs do not yet."""
    clock = FrozenClock(DEFAULT)
    return FakeOrg.generate(seed=5, project_count=12, clock=clock, spike_project=False, runaway_project=True)


def estimate(vm: VictoriaMetrics, metric: str, project_id: str) -> float:
    """The one value of an estimate series the exporter pushed for a project."""
    [sample] = vm.query(f'{metric}{{project_id="{project_id}"}}')
    return float(sample["value"][1])


def test_exporter_runaway_reaches_slack_saying_estimate_and_resolves(
    stack: Stack, runaway_org: FakeOrg, tmp_path: Path
) -> None:
    """The exporter CLI pushes the estimated hourly rates: vmalert fires OpenAIRunawaySpend for Agent Loop alone,
    Slack gets its rate vs usual and the word ESTIMATE; once the fake's runaway is undone, RESOLVED arrives."""
    agent = runaway_org.agent_loop_project_id
    assert agent is not None
    with FakeAdminAPI(runaway_org, admin_key=ADMIN_KEY) as api:
        export_cycle(api, stack.vm, tmp_path, now=cli_now(runaway_org), usage=True)
        pushed = time.monotonic()
        firing = stack.slack.wait_for_title("FIRING: OpenAIRunawaySpend in Agent Loop", TIMEOUT, stack.log_tails)
        fired_after = time.monotonic() - pushed
        rate = estimate(stack.vm, "openai_estimated_cost_usd_per_hour", agent)
        usual = estimate(stack.vm, "openai_estimated_usual_cost_usd_per_hour", agent)
        assert rate > 3 * usual and rate >= 5
        expected = f"*Agent Loop* (`{agent}`): ${rate:.2f}/h estimated (usual ${usual:.2f}/h) [critical]"
        assert expected in firing["text"]
        assert "ESTIMATE from token usage, not billed costs" in firing["text"]
        assert f"A day at this rate would cost about ${24 * rate:.2f}." in firing["text"]
        # Every runaway alert of this evaluation has reached Alertmanager: none for the fake's other projects.
        ours = {p.id for p in runaway_org.projects}
        running = [a["labels"]["project_id"] for a in am_alerts(stack, "OpenAIRunawaySpend")]
        assert [pid for pid in running if pid in ours] == [agent]

        runaway_org.stop_runaway(agent, runaway_org.clock.now() - dt.timedelta(minutes=40))  # never happened
        export_cycle(api, stack.vm, tmp_path, now=cli_now(runaway_org), usage=True)
        pushed = time.monotonic()
        resolved = stack.slack.wait_for_title("RESOLVED: OpenAIRunawaySpend in Agent Loop", TIMEOUT, stack.log_tails)
        resolved_after = time.monotonic() - pushed
    assert resolved["color"] == "good"
    assert estimate(stack.vm, "openai_estimated_cost_usd_per_hour", agent) < 5
    print(f"exporter push -> runaway FIRING post: {fired_after:.2f} s; -> RESOLVED post: {resolved_after:.2f} s")


def test_runaway_holds_back_the_same_projects_spike(stack: Stack) -> None:
    """One incident, one message: while a project's runaway fires, Alertmanager inhibits its daily spike; once the
    hourly rate is back to usual, the spike is sent."""
    daily = f"openai_daily_cost_usd{{{LOOPING}}} 40\nopenai_daily_cost_baseline_usd{{{LOOPING}}} 4\n"
    usual = f"openai_estimated_usual_cost_usd_per_hour{{{LOOPING}}} 5\n"
    feed(stack.vm, f"{daily}openai_estimated_cost_usd_per_hour{{{LOOPING}}} 50\n{usual}")
    runaway = stack.slack.wait_for_title("FIRING: OpenAIRunawaySpend in Looping Agent", TIMEOUT, stack.log_tails)
    assert "*Looping Agent* (`proj_r`): $50.00/h estimated (usual $5.00/h) [critical]" in runaway["text"]

    def spike_inhibited() -> bool:
        alerts = [a for a in am_alerts(stack, "OpenAICostSpike") if a["labels"].get("project_id") == "proj_r"]
        return bool(alerts) and all(alert["status"]["inhibitedBy"] for alert in alerts)

    wait_until(spike_inhibited, TIMEOUT, "the spike alert to be inhibited", stack.log_tails)
    assert not [t for t in stack.slack.titles() if t.startswith("FIRING: OpenAICostSpike in Looping Agent")]

    feed(stack.vm, f"{daily}openai_estimated_cost_usd_per_hour{{{LOOPING}}} 5\n{usual}")
    released = stack.slack.wait_for_title("FIRING: OpenAICostSpike in Looping Agent", TIMEOUT, stack.log_tails)
    assert "*Looping Agent* (`proj_r`): $40.00 (baseline $4.00) [warning]" in released["text"]
