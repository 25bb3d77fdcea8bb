"""The Grafana dashboard: valid JSON, sane structure, and every query answered by a real VictoriaMetrics."""

from __future__ import annotations

import datetime as dt
import json
import re
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.stack import VictoriaMetrics, victoria_metrics

ROOT = Path(__file__).resolve().parent.parent
GRAFANA = ROOT / "deploy" / "grafana"
DASHBOARD = json.loads((GRAFANA / "openai-costs.json").read_text(encoding="utf-8"))
DATASOURCE = {"type": "prometheus", "uid": "${datasource}"}
#: How Grafana would fill its variables for "All projects" over the default 30-day range.
SUBSTITUTIONS = {"$project": ".*", "$__rate_interval": "15m", "$__interval": "1h", "$__range": "30d"}
DAY = 86_400
PROJECTS = {"proj_chat": "Customer chat", "proj_search": 'Search "reranker"', "unattributed": "unattributed"}
CLOSED_DAYS = 30
JOB = {"job": "openai_cost_exporter"}


def panels() -> list[dict[str, Any]]:
    """Every non-row panel of the dashboard."""
    return [p for p in DASHBOARD["panels"] if p["type"] != "row"]


def daily_panel() -> dict[str, Any]:
    """The stacked bar chart of daily spend (the one panel with a 1d interval)."""
    return next(p for p in panels() if p.get("interval") == "1d")


def targets() -> list[tuple[str, dict[str, Any]]]:
    """(panel title, target) for every query of the dashboard."""
    return [(p["title"], t) for p in panels() for t in p["targets"]]


def substitute(expr: str) -> str:
    """The expression as Grafana sends it, for the variables of SUBSTITUTIONS."""
    for variable, value in sorted(SUBSTITUTIONS.items(), key=lambda kv: -len(kv[0])):
        expr = expr.replace(variable, value)
    assert "$" not in expr, f"unsubstituted variable in {expr}"
    return expr


def closed_day_value(project_index: int, days_ago: int) -> float:
    """The final cost fed for a project on a closed day: distinct per project and per day."""
    return round(10.0 * (project_index + 1) + days_ago * 0.25, 2)


def _closed_days(today: int) -> Iterator[str]:
    for days_ago in range(1, CLOSED_DAYS + 1):
        stamp_ms = (today - days_ago * DAY + DAY - 1) * 1000  # 23:59:59 of the closed day
        for i, (pid, name) in enumerate(PROJECTS.items()):
            labels = f'project_id="{pid}",project="{name.replace(chr(34), chr(92) + chr(34))}"'
            yield f"openai_daily_cost_usd{{{labels}}} {closed_day_value(i, days_ago)} {stamp_ms}"
            if i == 0:
                yield f'openai_daily_line_item_cost_usd{{{labels},line_item="gpt-4o, input"}} 3 {stamp_ms}'


def _live(now_ms: int, today: int) -> Iterator[str]:
    """Two hours of pushes every five minutes; today's per-day figures only from today's midnight on."""
    for stamp in _push_times(now_ms):
        for i, (pid, name) in enumerate(PROJECTS.items()):
            labels = f'project_id="{pid}",project="{name.replace(chr(34), chr(92) + chr(34))}"'
            if stamp >= today * 1000:
                yield f"openai_daily_cost_usd{{{labels}}} {4.0 * (i + 1)} {stamp}"
                for item in ("gpt-4o, input", "gpt-4o, output", "web search tool calls"):
                    yield f'openai_daily_line_item_cost_usd{{{labels},line_item="{item}"}} {1.5 * (i + 1)} {stamp}'
            yield f"openai_daily_cost_baseline_usd{{{labels}}} {2.0 * (i + 1)} {stamp}"
            yield f"openai_month_to_date_cost_usd{{{labels}}} {100.0 * (i + 1)} {stamp}"
            yield f"openai_month_forecast_cost_usd{{{labels}}} {300.0 * (i + 1)} {stamp}"
        yield f'openai_cost_budget_usd{{period="monthly",project_id="",project=""}} 1000 {stamp}'
        yield f'openai_cost_budget_usd{{period="daily",project_id="",project=""}} 50 {stamp}'
        yield f'openai_cost_budget_usd{{period="daily",project_id="proj_chat",project="Customer chat"}} 20 {stamp}'


def _push_times(now_ms: int) -> list[int]:
    """Every five minutes over the last two hours, oldest first, the last one `now_ms`."""
    return [now_ms - n * 300_000 for n in range(24, -1, -1)]


def _self_metrics(now_ms: int) -> Iterator[str]:
    """The exporter's own series over the same pushes, counters increasing."""
    for n, stamp in enumerate(_push_times(now_ms)):
        yield f"openai_cost_exporter_last_success_timestamp_seconds {stamp / 1000 - 2} {stamp}"
        yield f'openai_cost_exporter_cycles_total{{result="success"}} {n} {stamp}'
        yield f'openai_cost_exporter_cycles_total{{result="failure"}} {n // 5} {stamp}'
        yield f'openai_cost_exporter_errors_total{{stage="costs"}} {n // 5} {stamp}'
        yield f'openai_cost_exporter_api_requests_total{{endpoint="costs",status="200"}} {3 * n} {stamp}'
        yield f'openai_cost_exporter_api_requests_total{{endpoint="costs",status="429"}} {n // 3} {stamp}'
        yield f"openai_cost_exporter_cycle_duration_seconds 1.25 {stamp}"
        yield f"openai_cost_exporter_notifications_pending 0 {stamp}"


def feed_sample_data(vm: VictoriaMetrics) -> None:
    """Push what a running exporter would have pushed: 30 closed days (backfill), today's figures, self-metrics."""
    now_ms = int(time.time() * 1000) - 1000  # a second in the past: visible to queries at "now"
    today = now_ms // 1000 // DAY * DAY
    lines = [*_closed_days(today), *_live(now_ms, today), *_self_metrics(now_ms)]
    vm.push("\n".join(lines) + "\n", JOB)
    vm.force_flush()


@pytest.fixture(scope="module")
def vm(tmp_path_factory: pytest.TempPathFactory) -> Iterator[VictoriaMetrics]:
    """A real VictoriaMetrics fed with sample data, shared by the query tests of this module."""
    with victoria_metrics(tmp_path_factory.mktemp("vm")) as server:
        feed_sample_data(server)
        yield server


def query_range(vm: VictoriaMetrics, expr: str, start: int, end: int, step: int) -> list[dict[str, Any]]:
    """A range query as Grafana sends it (start aligned to the step), bypassing the cache."""
    params = {"query": expr, "start": start // step * step, "end": end, "step": step, "nocache": "1"}
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
        "openai_cost_exporter_last_success_timestamp_seconds",
        "openai_cost_exporter_errors_total",
        "openai_cost_exporter_api_requests_total",
    ):
        assert needle in exprs, needle


def test_per_project_queries_filter_by_the_project_variable() -> None:
    """Every query of a per-project cost metric honours the `$project` selection."""
    for title, target in targets():
        for metric in re.findall(r"openai_(?:daily|month)\w*_usd\{[^}]*\}", target["expr"]):
            assert 'project=~"$project"' in metric, f"{title}: {metric}"


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
    now = int(time.time())
    step = step_seconds(target.get("interval"))
    result = query_range(vm, expr, now - CLOSED_DAYS * DAY, now, step)
    assert result and any(series["values"] for series in result), f"{title}: {expr} -> {result}"


@pytest.mark.stack
def test_project_variable_lists_every_project(vm: VictoriaMetrics) -> None:
    """`label_values(openai_daily_cost_usd, project)` lists the project names, quotes included."""
    response = vm.client.get(f"{vm.url}/api/v1/label/project/values", params={"match[]": "openai_daily_cost_usd"})
    assert sorted(response.json()["data"]) == sorted(PROJECTS.values())


@pytest.mark.stack
def test_daily_bars_show_each_closed_day_on_its_own_date(vm: VictoriaMetrics) -> None:
    """The daily bar query puts each day's final value on that day's midnight, and today's figure last."""
    daily = daily_panel()
    expr = substitute(daily["targets"][0]["expr"])
    now = int(time.time())
    result = query_range(vm, expr, now - 10 * DAY, now, DAY)
    values = {s["metric"]["project"]: dict(s["values"]) for s in result}
    today = now // DAY * DAY
    for i, name in enumerate(PROJECTS.values()):
        for days_ago in range(1, 10):
            stamp = today - days_ago * DAY
            day = dt.datetime.fromtimestamp(stamp, dt.UTC).date()
            assert float(values[name][stamp]) == closed_day_value(i, days_ago), f"{name} on {day}"
        assert float(values[name][today]) == 4.0 * (i + 1), f"{name} today"
