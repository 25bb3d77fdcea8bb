"""The Grafana dashboard: valid JSON, sane structure, and every query answered by a real VictoriaMetrics fed by
the exporter CLI (`run --once --backfill-days 30 --line-items --api-keys`) against the fake OpenAI organization."""

from __future__ import annotations

import datetime as dt
import json
import re
import time
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
import yaml

from openai_cost_exporter.core.clock import FrozenClock
from openai_cost_exporter.core.models import UNATTRIBUTED, day_start
from openai_cost_exporter.fake.api import FakeAdminAPI
from openai_cost_exporter.fake.org import FakeOrg
from tests.clirun import ADMIN_KEY, run_once
from tests.moments import WEDNESDAY_2000
from tests.stack import VictoriaMetrics, victoria_metrics

ROOT = Path(__file__).resolve().parent.parent
GRAFANA = ROOT / "deploy" / "grafana"
DASHBOARD = json.loads((GRAFANA / "openai-costs.json").read_text(encoding="utf-8"))
DATASOURCE = {"type": "prometheus", "uid": "${datasource}"}
#: How Grafana would fill its variables for "All projects" over the default 30-day range.
SUBSTITUTIONS = {"$project": ".*", "$__rate_interval": "15m", "$__interval": "1h", "$__range": "30d"}
DAY = 86_400
CLOSED_DAYS = 30
KEYS_PANEL = "Top API keys today (billed)"
LIMITS_PANEL = "Hard spend limit: month to date vs limit"
#: Organization and per-project budgets, so the budget panels have series (the fake has no notion of budgets).
BUDGETS = """[alerts]
monthly_budget_usd = 1000
daily_budget_usd = 50

[alerts.projects."Default project"]
daily_budget_usd = 20
"""


def panels() -> list[dict[str, Any]]:
    """Every non-row panel of the dashboard."""
    return [p for p in DASHBOARD["panels"] if p["type"] != "row"]


def daily_panel() -> dict[str, Any]:
    """The stacked bar chart of daily spend (the one panel with a 1d interval)."""
    return next(p for p in panels() if p.get("interval") == "1d")


def panel(title: str) -> dict[str, Any]:
    return next(p for p in panels() if p["title"] == title)


def metric_names(expr: str) -> set[str]:
    """The exporter metrics an expression reads (every one is named `openai_...`)."""
    return set(re.findall(r"\bopenai_\w+", expr))


def targets() -> list[tuple[str, dict[str, Any]]]:
    """(panel title, target) for every query of the dashboard."""
    return [(p["title"], t) for p in panels() for t in p["targets"]]


def substitute(expr: str) -> str:
    """The expression as Grafana sends it, for the variables of SUBSTITUTIONS."""
    for variable, value in sorted(SUBSTITUTIONS.items(), key=lambda kv: -len(kv[0])):
        expr = expr.replace(variable, value)
    assert "$" not in expr, f"unsubstituted variable in {expr}"
    return expr


def project_label(project_id: str | None, org: FakeOrg) -> str:
    """The `project` label the exporter writes: the name, else the id; `unattributed` for a null project_id."""
    if project_id is None:
        return UNATTRIBUTED
    return org.project(project_id).name or project_id


def daily_by_label(org: FakeOrg, day: dt.date) -> dict[str, float]:
    """The fake's truth for one UTC day, summed per `project` label (two projects may share a name)."""
    sums: dict[str, Decimal] = {}
    for project_id, amount in org.daily_totals(day).items():
        label = project_label(project_id, org)
        sums[label] = sums.get(label, Decimal(0)) + amount
    return {label: float(amount) for label, amount in sums.items()}


def month_to_date(org: FakeOrg, project_id: str | None) -> Decimal:
    """The fake's truth: a project's billed spend from the 1st of the fake's UTC month to today so far."""
    today = org.clock.now().date()
    days = (today.replace(day=1) + dt.timedelta(days=n) for n in range(today.day))
    return sum((org.daily_totals(day).get(project_id, Decimal(0)) for day in days), Decimal(0))


def feed_sample_data(vm: VictoriaMetrics, api: FakeAdminAPI, workdir: Path) -> None:
    """Run the exporter CLI twice against the fake, as a fresh install with a 30-day backfill: 30 closed days,
    today's live figures, line items and API keys, the fake's hard spend limits, budgets and self-metrics (two
    samples each, for rate())."""
    config = workdir / "budgets.toml"
    config.write_text(BUDGETS, encoding="utf-8")
    for _ in range(2):
        result = run_once(
            api.base_url,
            workdir / "state",
            "--push-url",
            vm.import_url,
            "--backfill-days",
            str(CLOSED_DAYS),
            "--line-items",
            "--api-keys",
            "--config",
            str(config),
            now=api.org.clock.now(),
        )
        assert result.returncode == 0, result.output
    vm.force_flush()


@pytest.fixture(scope="module")
def org() -> FakeOrg:
    """A fake organization frozen at 20:00 UTC of a weekday: awkward names, archived projects, unattributed spend."""
    return FakeOrg.generate(seed=13, project_count=20, clock=FrozenClock(WEDNESDAY_2000))


@pytest.fixture(scope="module")
def vm(tmp_path_factory: pytest.TempPathFactory, org: FakeOrg) -> Iterator[VictoriaMetrics]:
    """A real VictoriaMetrics fed by the exporter, shared by the query tests of this module."""
    workdir = tmp_path_factory.mktemp("vm")
    with FakeAdminAPI(org, admin_key=ADMIN_KEY) as api, victoria_metrics(workdir) as server:
        feed_sample_data(server, api, workdir)
        yield server


def query_range(vm: VictoriaMetrics, expr: str, start: float, end: float, step: int) -> list[dict[str, Any]]:
    """A range query with points at start, start + step, ... up to end, bypassing the cache."""
    params = {"query": expr, "start": f"{start:.3f}", "end": f"{end:.3f}", "step": str(step), "nocache": "1"}
    response = vm.client.get(f"{vm.url}/api/v1/query_range", params=params)
    assert response.status_code == 200, f"{expr}: {response.text}"
    return list(response.json()["data"]["result"])


def step_seconds(interval: str | None) -> int:
    """Grafana's min interval ("1d", "5m") in seconds; 1 h (30 days over ~720 points) when unset."""
    if not interval:
        return 3600
    number, unit = re.fullmatch(r"(\d+)([smhd])", interval).groups()  # type: ignore[union-attr]
    return int(number) * {"s": 1, "m": 60, "h": 3600, "d": DAY}[unit]


# --- static structure -----------------------------------------------------------------------------------------


def test_dashboard_has_variables_for_datasource_and_project() -> None:
    """The dashboard asks for a Prometheus-type data source and a multi-select project variable."""
    variables = {v["name"]: v for v in DASHBOARD["templating"]["list"]}
    assert variables["datasource"]["type"] == "datasource"
    assert variables["datasource"]["query"] == "prometheus"
    project = variables["project"]
    assert project["definition"] == "label_values(openai_daily_cost_usd, project)"
    assert project["datasource"] == DATASOURCE
    assert project["multi"] and project["includeAll"] and project["allValue"] == ".*"


def test_every_panel_uses_the_datasource_variable() -> None:
    """Panels and targets point at `${datasource}`, so the dashboard works with any VictoriaMetrics/Prometheus."""
    for panel in panels():
        assert panel["datasource"] == DATASOURCE, panel["title"]
        assert panel["targets"], panel["title"]
        for target in panel["targets"]:
            assert target["datasource"] == DATASOURCE, panel["title"]
            assert target["expr"].strip()


def test_panel_ids_unique_and_inside_the_grid() -> None:
    """Panel ids are unique and every panel fits the 24-column grid without overlapping another."""
    ids = [p["id"] for p in DASHBOARD["panels"]]
    assert len(ids) == len(set(ids))
    cells: set[tuple[int, int]] = set()
    for panel in DASHBOARD["panels"]:
        pos = panel["gridPos"]
        assert pos["x"] >= 0 and pos["x"] + pos["w"] <= 24, panel["title"]
        area = {(x, y) for x in range(pos["x"], pos["x"] + pos["w"]) for y in range(pos["y"], pos["y"] + pos["h"])}
        assert not area & cells, f"{panel['title']} overlaps another panel"
        cells |= area


def test_dashboard_covers_the_required_panels() -> None:
    """Daily bars, today vs baseline, month to date, top line items and exporter health are all there."""
    exprs = " ".join(t["expr"] for _, t in targets())
    daily = next(
        p for p in panels() if "openai_daily_cost_usd" in p["targets"][0]["expr"] and p["type"] == "timeseries"
    )
    assert daily["fieldConfig"]["defaults"]["custom"]["drawStyle"] == "bars"
    assert daily["interval"] == "1d" and "last_over_time(" in daily["targets"][0]["expr"]
    for needle in (
        "openai_daily_cost_baseline_usd",
        "openai_month_to_date_cost_usd",
        "topk(10,",
        "openai_daily_line_item_cost_usd",
        "openai_daily_api_key_cost_usd",
        "openai_spend_limit_usd",
        "openai_cost_exporter_last_success_timestamp_seconds",
        "openai_cost_exporter_errors_total",
        "openai_cost_exporter_api_requests_total",
    ):
        assert needle in exprs, needle


def test_per_project_queries_filter_by_the_project_variable() -> None:
    """Every query of a per-project cost metric honours the `$project` selection."""
    for title, target in targets():
        for metric in re.findall(r"openai_(?:daily|month|estimated)\w*_usd\w*\{[^}]*\}", target["expr"]):
            assert 'project=~"$project"' in metric, f"{title}: {metric}"


def test_key_and_limit_panels_read_the_exporters_series() -> None:
    """The top keys panel ranks today's billed cost per key of the selected projects; the limit panel divides each
    limited project's month to date by its own hard limit and the organization's total by the organization's."""
    [keys] = panel(KEYS_PANEL)["targets"]
    assert keys["expr"].startswith("topk(20,") and keys["instant"]
    assert metric_names(keys["expr"]) == {"openai_daily_api_key_cost_usd"}
    assert "{{api_key}}" in keys["legendFormat"] and "{{project}}" in keys["legendFormat"]
    limits = panel(LIMITS_PANEL)
    assert limits["fieldConfig"]["defaults"]["unit"] == "percent"
    project, organization = limits["targets"]
    assert (
        metric_names(project["expr"])
        == metric_names(organization["expr"])
        == {
            "openai_month_to_date_cost_usd",
            "openai_spend_limit_usd",
        }
    )
    assert 'openai_spend_limit_usd{scope="project"}' in project["expr"] and "on (project_id)" in project["expr"]
    assert 'openai_month_to_date_cost_usd{project=~"$project"}' in project["expr"]
    # The organization's limit is held against every project's spend, whatever the selection.
    assert 'openai_spend_limit_usd{scope="organization"}' in organization["expr"]
    assert "$project" not in organization["expr"]


def test_estimates_are_titled_as_estimates_and_kept_apart_from_billed_costs() -> None:
    """The estimated hourly rate and its usual are on the dashboard; every panel showing an estimate says so in its
    title and queries no billed series (estimates are never mixed into billed figures)."""
    estimated = [p for p in panels() if any("openai_estimated_" in t["expr"] for t in p["targets"])]
    metrics = {m for p in estimated for t in p["targets"] for m in re.findall(r"openai_\w+", t["expr"])}
    assert {"openai_estimated_cost_usd_per_hour", "openai_estimated_usual_cost_usd_per_hour"} <= metrics
    for panel in estimated:
        assert "ESTIMATE" in panel["title"], panel["title"]
        used = {m for t in panel["targets"] for m in re.findall(r"openai_\w+", t["expr"])}
        assert all(m.startswith(("openai_estimated_", "openai_usage_")) for m in used), panel["title"]


def test_provisioning_points_at_the_dashboard() -> None:
    """The compose provisioning files declare a Prometheus-type data source and load the dashboard folder."""
    datasource = yaml.safe_load((GRAFANA / "provisioning" / "datasources" / "victoriametrics.yml").read_text())
    assert datasource["datasources"][0]["type"] == "prometheus"
    provider = yaml.safe_load((GRAFANA / "provisioning" / "dashboards" / "openai-cost-exporter.yml").read_text())
    assert provider["providers"][0]["options"]["path"] == "/etc/grafana/dashboards"


# --- against a real VictoriaMetrics -------------------------------------------------------------------------


@pytest.mark.stack
@pytest.mark.parametrize(("title", "target"), targets(), ids=[f"{t}-{x['refId']}" for t, x in targets()])
def test_query_returns_data(vm: VictoriaMetrics, title: str, target: dict[str, Any]) -> None:
    """Each panel query, as Grafana would send it, returns at least one series with a value."""
    expr = substitute(target["expr"])
    if target.get("instant"):
        result = vm.query(expr)
        assert result and all("value" in series for series in result), f"{title}: {expr} -> {result}"
        return
    step = step_seconds(target.get("interval"))
    # Grafana aligns its points to the step, so its newest point can be up to an hour old; this VictoriaMetrics
    # holds only seconds of live data (an exporter that pushes every 5 minutes fills every hour). So the points
    # here end at "now" (half a second ahead, as in `VictoriaMetrics.query`), 30 days back.
    end = time.time() + 0.5
    result = query_range(vm, expr, end - CLOSED_DAYS * DAY, end, step)
    assert result and any(series["values"] for series in result), f"{title}: {expr} -> {result}"


@pytest.mark.stack
def test_project_variable_lists_every_project(vm: VictoriaMetrics, org: FakeOrg) -> None:
    """`label_values(openai_daily_cost_usd, project)` lists every project that spent in the last 30 days by the
    name the API gives it, quotes, backslashes and newlines included."""
    today = org.clock.now().date()
    # From the fake's first closed day to now: the closed days are stamped on the fake's dates, today's figures on
    # receipt (VictoriaMetrics' real clock), whatever the two are.
    start = day_start(today - dt.timedelta(days=CLOSED_DAYS))
    params = {"match[]": "openai_daily_cost_usd", "start": str(start), "end": f"{time.time() + 1:.0f}"}
    response = vm.client.get(f"{vm.url}/api/v1/label/project/values", params=params)
    expected = {label for n in range(CLOSED_DAYS + 1) for label in daily_by_label(org, today - dt.timedelta(days=n))}
    assert set(response.json()["data"]) == expected
    assert any('"' in name for name in expected) and any("\n" in name for name in expected)


@pytest.mark.stack
def test_daily_bars_show_each_closed_day_on_its_own_date(vm: VictoriaMetrics, org: FakeOrg) -> None:
    """The daily bar query puts each day's final value, as the API billed it, on that day's midnight, and today's
    figure so far on the midnight of the day it was received (live samples carry no timestamp)."""
    expr = substitute(daily_panel()["targets"][0]["expr"])
    today = org.clock.now().date()
    closed = day_start(today)  # the fake's today: the days before it are closed, on their own dates
    received = max(at for series in vm.export("openai_daily_cost_usd") for at in series["timestamps"]) // 1000
    live = received // DAY * DAY  # the midnight of the day VictoriaMetrics received today's figures
    for start, end, days_ago in ((closed - 9 * DAY, closed - DAY, range(1, 10)), (live, live, [0])):
        result = query_range(vm, expr, start, end, DAY)  # midnights, as Grafana aligns them
        values = {s["metric"]["project"]: {stamp: float(v) for stamp, v in s["values"]} for s in result}
        for n in days_ago:
            day, stamp = today - dt.timedelta(days=n), (live if n == 0 else closed - n * DAY)
            truth = daily_by_label(org, day)
            assert truth, day
            for label, amount in truth.items():
                assert values[label][stamp] == pytest.approx(amount, rel=1e-9), f"{label!r} on {day}"


@pytest.mark.stack
def test_last_successful_cycle_panel_shows_the_pushed_cycle(vm: VictoriaMetrics, org: FakeOrg) -> None:
    """After `run --once` pushed, the "Last successful cycle" panel shows the seconds since the cycle's clock said
    it succeeded (the CLI's frozen test clock, against VictoriaMetrics' real one), not the age of the epoch."""
    [target] = next(p for p in panels() if p["title"] == "Last successful cycle")["targets"]
    [series] = vm.query(substitute(target["expr"]))
    age = float(series["value"][0]) - org.clock.now().timestamp()
    assert age - 120 < float(series["value"][1]) <= age


@pytest.mark.stack
def test_every_query_reads_only_metrics_the_exporter_pushed(vm: VictoriaMetrics) -> None:
    """Every metric a dashboard query names is one the exporter CLI pushed (a misspelt or unexported name would
    leave a panel empty for good)."""
    response = vm.client.get(f"{vm.url}/api/v1/label/__name__/values")
    pushed = set(response.json()["data"])
    used = {name for _, target in targets() for name in metric_names(target["expr"])}
    assert {"openai_daily_api_key_cost_usd", "openai_spend_limit_usd"} <= used
    assert used <= pushed, sorted(used - pushed)


@pytest.mark.stack
def test_limit_panel_shows_each_limited_project_and_the_organization(vm: VictoriaMetrics, org: FakeOrg) -> None:
    """The limit panel shows every project with a hard limit (and only those) at its month to date as a percentage
    of the fake's limit in cents, the one near its limit at about 85%, and the organization against its own."""
    project, organization = (substitute(t["expr"]) for t in panel(LIMITS_PANEL)["targets"])
    shown = {s["metric"]["project_id"]: float(s["value"][1]) for s in vm.query(project)}
    limited = {p.id for p in org.projects if org.spend_limit(p.id) is not None}
    assert set(shown) == {pid for pid in limited if month_to_date(org, pid) > 0}
    for pid, percent in shown.items():
        cents, _ = org.spend_limit(pid) or (0, "")
        assert percent == pytest.approx(float(100 * month_to_date(org, pid) * 100 / cents), rel=1e-9), pid
    assert 80 < shown[org.near_limit_project_id] < 100
    assert shown[org.limit_reached_project_id] >= 100
    [whole] = vm.query(organization)
    org_cents, _ = org.spend_limit(None) or (0, "")
    total = sum((month_to_date(org, p.id) for p in org.projects), month_to_date(org, None))
    assert float(whole["value"][1]) == pytest.approx(float(100 * total * 100 / org_cents), rel=1e-9)


@pytest.mark.stack
def test_keys_panel_shows_the_fakes_spend_per_key(vm: VictoriaMetrics, org: FakeOrg) -> None:
    """The top keys panel shows today's billed spend of each key as the fake billed it (`none`: outside API keys),
    no more than 20 of them."""
    [target] = panel(KEYS_PANEL)["targets"]
    result = vm.query(substitute(target["expr"]))
    truth = org.key_totals(org.clock.now().date())
    assert 0 < len({(s["metric"]["project_id"], s["metric"]["api_key_id"]) for s in result}) <= 20
    named = [s for s in result if s["metric"]["api_key_id"] != "other"]
    assert named
    for series in named:
        labels = series["metric"]
        key = None if labels["api_key_id"] == "none" else labels["api_key_id"]
        amount = truth[(labels["project_id"], key)]
        assert float(series["value"][1]) == pytest.approx(float(amount), rel=1e-9), labels
