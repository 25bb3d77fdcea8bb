"""The runaway rule and the estimates it reads: pure figures in, decisions out."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal
from pathlib import Path

import pytest

from openai_cost_exporter.core.models import UsageRow
from openai_cost_exporter.figures.estimates import HOUR, build_estimates, hour_of
from openai_cost_exporter.figures.pricing import PriceBook
from openai_cost_exporter.rules import Alert, AlertPolicy, ProjectPolicy, evaluate_runaways, fold_into_runaways
from openai_cost_exporter.rules.runaway import RunawayFigures, median
from openai_cost_exporter.store.state import open_state
from openai_cost_exporter.store.usage_store import UsageStore

D = Decimal
NOW = dt.datetime(2026, 11, 25, 12, 30, tzinfo=dt.UTC)


def figures(rate: str, usual: str, pid: str = "proj_a") -> RunawayFigures:
    return RunawayFigures(pid, pid, D(rate), D(usual), [("gpt-4o", D(rate))])


@pytest.mark.parametrize(
    ("rate", "usual", "fires"),
    [("31", "10", True), ("30", "10", False), ("4.99", "0", False), ("5", "0", True), ("0", "0", False)],
)
def test_runaway_needs_the_ratio_and_the_floor(rate: str, usual: str, fires: bool) -> None:
    """rate > 3 x usual and rate >= $5/h; a project with no usual spend alerts once over the floor."""
    assert bool(evaluate_runaways(AlertPolicy(), [figures(rate, usual)])) is fires


def test_overrides_and_mute_apply_to_the_runaway_rule() -> None:
    """Per-project overrides change the ratio and floor; a muted project never runs away."""
    policy = AlertPolicy(projects={"proj_a": ProjectPolicy(runaway_ratio=D(10)), "proj_b": ProjectPolicy(mute=True)})
    alerts = evaluate_runaways(policy, [figures("50", "10", "proj_a"), figures("50", "1", "proj_b")])
    assert alerts == []
    [alert] = evaluate_runaways(policy, [figures("101", "10", "proj_a")])
    assert (alert.rule, alert.value, alert.threshold, alert.ratio) == ("runaway", D(101), D(100), D("10.1"))


def test_a_spike_is_folded_into_the_runaway_of_the_same_project() -> None:
    """One incident, one message: the spike of a project with a runaway is left out, others stay."""

    def make(rule: str, subject: str) -> Alert:
        return Alert(rule, subject, subject, "warning", D(1), D(1), D(0), None, "firing")  # type: ignore[arg-type]

    kept = fold_into_runaways([make("runaway", "a"), make("spike", "a"), make("spike", "b"), make("daily_budget", "a")])
    assert [(a.rule, a.subject_id) for a in kept] == [("runaway", "a"), ("spike", "b"), ("daily_budget", "a")]


def test_median() -> None:
    """The median of odd and even counts, 0 for none."""
    assert median([D(3), D(1), D(2)]) == 2 and median([D(4), D(1), D(2), D(3)]) == D("2.5") and median([]) == 0


def row(start: int, tokens: int) -> UsageRow:
    return UsageRow(start, "proj_a", "gpt-4o-2024-08-06", "completions", tokens, 0, 0, 1)


def test_rate_and_usual_use_the_same_sixty_minutes_of_the_clock(tmp_path: Path) -> None:
    """At 12:15 the rate is all of 12:00-12:15 and three quarters of 11:00; the usual is the median of that
    window on the earlier days (a quarter of their 12:00 hour, three quarters of 11:00), and the share of the
    day is what those days had spent by 12:15."""
    conn = open_state(tmp_path / "state.sqlite3")
    store = UsageStore(conn)
    now = NOW.replace(minute=15)
    current = hour_of(now)
    million = 1_000_000  # $2.50 of gpt-4o input
    rows = [row(current, 4 * million), row(current - HOUR, 2 * million)]
    for day in range(1, 8):
        at = current - day * 24 * HOUR
        rows += [row(at, 8 * million), row(at - HOUR, 4 * million)]  # $20 at 12:00, $10 at 11:00, nothing else
    store.replace_hours("completions", [], rows, PriceBook().estimate)
    est = build_estimates(store, now, history_days=7)
    assert est.rate["proj_a"] == D("10.00") + D("5.00") * D("0.75")
    assert est.usual["proj_a"] == D("20.00") * D("0.25") + D("10.00") * D("0.75")
    assert est.shares["proj_a"] == (D("10.00") + D("20.00") * D("0.25")) / D("30.00")
    assert est.models["proj_a"][0][0] == "gpt-4o-2024-08-06"
    assert est.today[("proj_a", "gpt-4o-2024-08-06")] == D("15.00")
    conn.close()
