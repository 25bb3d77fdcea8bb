"""Metric exposition: live gauges from a snapshot, budgets, timestamped history, and promtool's opinion."""

from __future__ import annotations

import datetime as dt
import re
import subprocess
from collections.abc import Mapping
from decimal import Decimal

import pytest
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from openai_cost_exporter.core.clock import FrozenClock
from openai_cost_exporter.core.selfmetrics import SelfMetrics
from openai_cost_exporter.export.collector import (
    DAILY_COST,
    LINE_ITEM_COST,
    CostCollector,
    HistoryCollector,
    day_sample_time,
)
from openai_cost_exporter.figures.snapshot import CostSnapshot, build_snapshot
from openai_cost_exporter.rules import AlertPolicy, ProjectPolicy
from tests.stack import require_binary

D = Decimal
NOW = dt.datetime(2026, 11, 28, 12, tzinfo=dt.UTC)
TODAY = NOW.date()
YESTERDAY = TODAY - dt.timedelta(days=1)
TRICKY_NAMES = [
    'say "hi"',
    "back\\slash\\",
    "two\nlines",
    "emoji 🚀💸 ünïcödé",
    '\\"\n all at once 🎉',
]


def snapshot(
    names: Mapping[str, str] | None = None,
    totals: Mapping[dt.date, Mapping[str, Decimal]] | None = None,
    line_items: Mapping[tuple[str, str], Decimal] | None = None,
) -> CostSnapshot:
    # Saturday: the usual day is the median of the last seven weekend days (four weeks back).
    weekend = {TODAY - dt.timedelta(days=n): {"proj_a": D("1")} for n in (6, 7, 13, 14, 20, 21, 27)}
    totals = totals if totals is not None else {TODAY: {"proj_a": D("1.25")}, YESTERDAY: {"proj_a": D("7")}, **weekend}
    return build_snapshot(NOW, names or {"proj_a": "Alpha"}, totals, baseline_days=7, line_items=line_items)


def live_registry(snap: CostSnapshot | None, policy: AlertPolicy | None = None) -> CollectorRegistry:
    registry = CollectorRegistry()
    registry.register(CostCollector(lambda: snap, policy or AlertPolicy(), FrozenClock(NOW)))
    return registry


def parsed(registry: CollectorRegistry) -> dict[str, list[tuple[dict[str, str], float, float | None]]]:
    """Family name -> (labels, value, timestamp) of each sample, read back through the text parser."""
    families = text_string_to_metric_families(generate_latest(registry).decode())
    result: dict[str, list[tuple[dict[str, str], float, float | None]]] = {}
    for family in families:
        for sample in family.samples:
            stamp = None if sample.timestamp is None else float(sample.timestamp)
            result.setdefault(family.name, []).append((dict(sample.labels), sample.value, stamp))
    return result


def test_nothing_before_first_snapshot() -> None:
    """Until a cycle has produced a snapshot, the collector exposes no family at all (not zeros)."""
    registry = live_registry(None, AlertPolicy(daily_budget_usd=D(5)))
    assert generate_latest(registry) == b""


def test_live_gauges() -> None:
    """Today, baseline, month to date and forecast carry the snapshot's figures per project."""
    snap = snapshot()
    registry = live_registry(snap)
    labels = {"project_id": "proj_a", "project": "Alpha"}
    assert registry.get_sample_value(DAILY_COST, labels) == 1.25
    assert registry.get_sample_value("openai_daily_cost_baseline_usd", labels) == 1.0
    assert registry.get_sample_value("openai_month_to_date_cost_usd", labels) == 15.25
    assert registry.get_sample_value("openai_month_forecast_cost_usd", labels) == float(snap.forecast["proj_a"])


def test_project_without_spend_today_reads_zero() -> None:
    """A project with spend only in the baseline window gets an explicit 0 for today, not a missing series."""
    older = {TODAY - dt.timedelta(days=n): {"c": D(1)} for n in (8, 9, 10)}  # a known history, without a or b
    snap = snapshot(totals={TODAY: {"a": D(1)}, YESTERDAY: {"b": D(7)}, **older}, names={"a": "A", "b": "B"})
    registry = live_registry(snap)
    assert registry.get_sample_value(DAILY_COST, {"project_id": "b", "project": "B"}) == 0.0
    assert registry.get_sample_value("openai_daily_cost_baseline_usd", {"project_id": "a", "project": "A"}) == 0.0


def test_value_is_float_of_decimal_sum() -> None:
    """The sample is float() of the exact Decimal sum, not a sum of floats."""
    amounts = [D("0.1")] * 10 + [D("0.000000000123456789")] * 1000
    totals = {TODAY: {"p": sum(amounts, D(0))}}
    registry = live_registry(snapshot(totals=totals, names={"p": "P"}))
    value = registry.get_sample_value(DAILY_COST, {"project_id": "p", "project": "P"})
    assert value == float(D("1.000000123456789"))
    assert value != sum(float(a) for a in amounts)


def test_unknown_name_falls_back_to_id() -> None:
    """A project missing from the names map is labelled with its id as the name."""
    registry = live_registry(snapshot(names={"other": "Other"}))
    assert registry.get_sample_value(DAILY_COST, {"project_id": "proj_a", "project": "proj_a"}) == 1.25


@pytest.mark.parametrize("name", TRICKY_NAMES)
def test_label_values_round_trip(name: str) -> None:
    """Project names with quotes, backslashes, newlines and emoji come back identical through the text format."""
    line_items = {("proj_a", f"{name}, input"): D("0.5")}
    families = parsed(live_registry(snapshot(names={"proj_a": name}, line_items=line_items)))
    assert families[DAILY_COST] == [({"project_id": "proj_a", "project": name}, 1.25, None)]
    [(labels, _, _)] = families[LINE_ITEM_COST]
    assert labels == {"project_id": "proj_a", "project": name, "line_item": f"{name}, input"}


def test_line_items_only_when_collected() -> None:
    """The line item family appears only when the snapshot carries line items."""
    assert LINE_ITEM_COST.encode() not in generate_latest(live_registry(snapshot()))
    registry = live_registry(snapshot(line_items={("proj_a", "gpt-4o, output"): D("0.75")}))
    labels = {"project_id": "proj_a", "project": "Alpha", "line_item": "gpt-4o, output"}
    assert registry.get_sample_value(LINE_ITEM_COST, labels) == 0.75


def test_organization_budgets_have_no_project_labels() -> None:
    """Organization budgets are exported with only the period label."""
    policy = AlertPolicy(daily_budget_usd=D("10.5"), monthly_budget_usd=D(300))
    families = parsed(live_registry(snapshot(), policy))
    assert sorted(families["openai_cost_budget_usd"], key=lambda s: s[0]["period"]) == [
        ({"period": "daily"}, 10.5, None),
        ({"period": "monthly"}, 300.0, None),
    ]


def test_no_budgets_configured() -> None:
    """Without budgets the budget family has no samples."""
    assert "openai_cost_budget_usd" not in parsed(live_registry(snapshot()))


def test_project_budgets_by_id_and_by_name() -> None:
    """Project overrides apply by project id and by exact name, including known projects without spend yet."""
    policy = AlertPolicy(
        monthly_budget_usd=D(1000),
        projects={
            "proj_a": ProjectPolicy(daily_budget_usd=D(5)),
            'Beta "B"': ProjectPolicy(monthly_budget_usd=D(50), daily_budget_usd=D(2)),
            "Quiet": ProjectPolicy(monthly_budget_usd=D(1)),
            "proj_nobody": ProjectPolicy(daily_budget_usd=D(9)),
            "proj_spike_only": ProjectPolicy(spike_ratio=D(3)),
        },
    )
    names = {"proj_a": "Alpha", "proj_b": 'Beta "B"', "proj_q": "Quiet", "proj_spike_only": "S"}
    totals = {TODAY: {"proj_a": D(1), "proj_b": D(1), "proj_spike_only": D(1)}}
    families = parsed(live_registry(snapshot(names=names, totals=totals), policy))
    budgets = sorted(
        ((labels.get("period"), labels.get("project_id", ""), labels.get("project", "")), value)
        for labels, value, _ in families["openai_cost_budget_usd"]
    )
    assert budgets == [
        (("daily", "proj_a", "Alpha"), 5.0),
        (("daily", "proj_b", 'Beta "B"'), 2.0),
        (("monthly", "", ""), 1000.0),
        (("monthly", "proj_b", 'Beta "B"'), 50.0),
        (("monthly", "proj_q", "Quiet"), 1.0),
    ]


def test_id_override_wins_over_name_override() -> None:
    """When a project has overrides under both its id and its name, the id's one is used."""
    policy = AlertPolicy(
        projects={"proj_a": ProjectPolicy(daily_budget_usd=D(5)), "Alpha": ProjectPolicy(daily_budget_usd=D(99))}
    )
    registry = live_registry(snapshot(), policy)
    labels = {"period": "daily", "project_id": "proj_a", "project": "Alpha"}
    assert registry.get_sample_value("openai_cost_budget_usd", labels) == 5.0


def test_collect_reads_the_current_snapshot_at_each_scrape() -> None:
    """Each scrape reads the snapshot provider again, so a new cycle's figures replace the old ones whole."""
    current: list[CostSnapshot | None] = [None]
    registry = CollectorRegistry()
    registry.register(CostCollector(lambda: current[0], AlertPolicy(), FrozenClock(NOW)))
    labels = {"project_id": "proj_a", "project": "Alpha"}
    assert registry.get_sample_value(DAILY_COST, labels) is None
    current[0] = snapshot()
    assert registry.get_sample_value(DAILY_COST, labels) == 1.25
    current[0] = snapshot(totals={TODAY: {"proj_a": D(2)}})
    assert registry.get_sample_value(DAILY_COST, labels) == 2.0


def test_day_sample_time_is_last_second_of_utc_day() -> None:
    """A closed day's sample sits at 23:59:59 UTC of that day."""
    assert day_sample_time(dt.date(2026, 11, 27)) == dt.datetime(2026, 11, 27, 23, 59, 59, tzinfo=dt.UTC).timestamp()
    assert day_sample_time(dt.date(2024, 12, 31)) == 1735689599.0


def test_history_timestamps_in_exposition() -> None:
    """Each closed day's sample carries the millisecond timestamp of 23:59:59 UTC of its day."""
    days = [dt.date(2026, 11, 26), dt.date(2026, 11, 27)]
    history = HistoryCollector({days[0]: {"a": D("1.5")}, days[1]: {"a": D("2.5")}}, {"a": "A"})
    registry = CollectorRegistry()
    registry.register(history)
    text = generate_latest(registry).decode()
    for day, value in zip(days, ["1.5", "2.5"], strict=True):
        millis = int(dt.datetime.combine(day, dt.time(23, 59, 59), dt.UTC).timestamp() * 1000)
        assert f'{DAILY_COST}{{project="A",project_id="a"}} {value} {millis}\n' in text


def test_history_zero_fills_projects() -> None:
    """A project with spend on some days gets 0 on the others, and also_projects get 0 everywhere."""
    d1, d2 = dt.date(2026, 11, 26), dt.date(2026, 11, 27)
    history = HistoryCollector({d1: {"a": D(1)}, d2: {"b": D(2)}}, {"a": "A", "b": "B"}, also_projects=["c", "a"])
    registry = CollectorRegistry()
    registry.register(history)
    samples = parsed(registry)[DAILY_COST]
    got = {(labels["project_id"], stamp): value for labels, value, stamp in samples}
    t1, t2 = day_sample_time(d1), day_sample_time(d2)
    assert got == {
        ("a", t1): 1.0,
        ("b", t1): 0.0,
        ("c", t1): 0.0,
        ("a", t2): 0.0,
        ("b", t2): 2.0,
        ("c", t2): 0.0,
    }
    assert history.sample_count == 6
    assert LINE_ITEM_COST not in parsed(registry)


@pytest.mark.parametrize("name", TRICKY_NAMES)
def test_history_line_items(name: str) -> None:
    """Closed days' line items are exported with their day's timestamp and the project's (tricky) name."""
    day = dt.date(2026, 11, 27)
    items = {day: {("a", "gpt-4o, input"): D("0.25"), ("a", "gpt-4o, output"): D("0.75")}}
    history = HistoryCollector({day: {"a": D(1)}}, {"a": name}, line_items=items)
    registry = CollectorRegistry()
    registry.register(history)
    samples = parsed(registry)[LINE_ITEM_COST]
    assert samples == [
        ({"project_id": "a", "project": name, "line_item": "gpt-4o, input"}, 0.25, day_sample_time(day)),
        ({"project_id": "a", "project": name, "line_item": "gpt-4o, output"}, 0.75, day_sample_time(day)),
    ]
    assert history.sample_count == 3


def test_empty_history_exposes_an_empty_family() -> None:
    """A history without days writes no samples."""
    history = HistoryCollector({}, {})
    registry = CollectorRegistry()
    registry.register(history)
    assert parsed(registry) == {}
    assert history.sample_count == 0


def promtool_check(text: bytes) -> subprocess.CompletedProcess[bytes]:
    promtool = require_binary("promtool")
    return subprocess.run([promtool, "check", "metrics"], input=text, capture_output=True, timeout=60, check=False)


def test_promtool_accepts_live_exposition() -> None:
    """`promtool check metrics` accepts /metrics of a populated registry (self metrics, costs, budgets)."""
    registry = CollectorRegistry(auto_describe=True)
    metrics = SelfMetrics(registry)
    metrics.count_error("push")
    metrics.cycles.labels(result="success").inc()
    metrics.api_requests.labels(endpoint="costs", status="200").inc()
    metrics.notifications_sent.labels(rule="spike").inc()
    metrics.pushed_samples.inc(12)
    metrics.projects.set(3)
    policy = AlertPolicy(
        daily_budget_usd=D(10), monthly_budget_usd=D(100), projects={"proj_a": ProjectPolicy(daily_budget_usd=D(1))}
    )
    snap = snapshot(names={"proj_a": TRICKY_NAMES[-1]}, line_items={("proj_a", "gpt-4o, input"): D("0.1")})
    registry.register(CostCollector(lambda: snap, policy, FrozenClock(NOW)))
    result = promtool_check(generate_latest(registry))
    assert result.returncode == 0, result.stdout.decode() + result.stderr.decode()


def test_promtool_accepts_history_exposition() -> None:
    """`promtool check metrics` accepts the timestamped history that backfill and revisions push."""
    day = dt.date(2026, 11, 27)
    registry = CollectorRegistry(auto_describe=False)
    registry.register(
        HistoryCollector({day: {"a": D(1)}}, {"a": "A"}, line_items={day: {("a", "gpt-4o, input"): D(1)}})
    )
    result = promtool_check(generate_latest(registry))
    assert result.returncode == 0, result.stdout.decode() + result.stderr.decode()


def test_promtool_rejects_broken_exposition() -> None:
    """The promtool check can fail: a counter without _total is reported (so the passes above mean something)."""
    text = b"# HELP x_requests Requests.\n# TYPE x_requests counter\nx_requests 1\n"
    assert promtool_check(text).returncode != 0


def test_sample_names_match_families() -> None:
    """Every exported sample name equals its family name (no stray suffixes on gauges)."""
    policy = AlertPolicy(daily_budget_usd=D(10))
    text = generate_latest(live_registry(snapshot(line_items={("proj_a", "x"): D(1)}), policy)).decode()
    names = set(re.findall(r"^([a-z_]+)[{ ]", text, flags=re.MULTILINE))
    assert names == {
        DAILY_COST,
        "openai_daily_cost_baseline_usd",
        "openai_daily_cost_spread_usd",
        "openai_month_to_date_cost_usd",
        "openai_month_forecast_cost_usd",
        LINE_ITEM_COST,
        "openai_cost_budget_usd",
    }


def test_a_snapshot_of_an_earlier_day_is_not_shown_as_today() -> None:
    """After UTC midnight, while the API fails, yesterday's figures are withheld instead of passing for today's;
    configured budgets stay."""
    snap = build_snapshot(NOW, {"proj_a": "Alpha"}, {TODAY: {"proj_a": Decimal("324.9")}}, baseline_days=7)
    registry = CollectorRegistry()
    after_midnight = FrozenClock(dt.datetime.combine(TODAY + dt.timedelta(days=1), dt.time(0, 5), dt.UTC))
    registry.register(CostCollector(lambda: snap, AlertPolicy(daily_budget_usd=Decimal(50)), after_midnight))
    text = generate_latest(registry).decode()
    assert "openai_daily_cost_usd" not in text and "openai_month_to_date_cost_usd" not in text
    assert registry.get_sample_value("openai_cost_budget_usd", {"period": "daily"}) == 50.0


def test_a_usual_day_not_known_publishes_no_baseline_series() -> None:
    """A day-old organization has no usual day: no baseline or spread series (the rule file's spike has nothing
    to compare with, as the built-in rule), while today's figures are there."""
    snap = snapshot(totals={TODAY: {"proj_a": D(40)}, YESTERDAY: {"proj_a": D(7)}})
    registry = live_registry(snap)
    assert registry.get_sample_value(DAILY_COST, {"project_id": "proj_a", "project": "Alpha"}) == 40.0
    labels = {"project_id": "proj_a", "project": "Alpha"}
    assert registry.get_sample_value("openai_daily_cost_baseline_usd", labels) is None
    assert registry.get_sample_value("openai_daily_cost_spread_usd", labels) is None
