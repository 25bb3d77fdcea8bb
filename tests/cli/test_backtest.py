"""The backtest: the alert policy replayed over a ledger (and usage store) filled directly, and its output."""

from __future__ import annotations

import datetime as dt
import json
import logging
from collections.abc import Iterator, Mapping
from decimal import Decimal
from pathlib import Path

import pytest

from openai_cost_exporter.alerts.alerter import Alerter
from openai_cost_exporter.alerts.message_inputs import MessageInputs
from openai_cost_exporter.cli.backtest import Backtest, render_json, render_table, run_backtest
from openai_cost_exporter.core.clock import FrozenClock
from openai_cost_exporter.core.models import CostRow, Project, UsageRow, day_start
from openai_cost_exporter.figures.estimates import HOUR, build_estimates
from openai_cost_exporter.figures.pricing import PriceBook
from openai_cost_exporter.notify.log_notifier import LogNotifier
from openai_cost_exporter.notify.notifications import Notifications
from openai_cost_exporter.rules import AlertPolicy, ProjectPolicy
from openai_cost_exporter.store.ledger import Ledger
from openai_cost_exporter.store.state import open_state
from openai_cost_exporter.store.usage_store import UsageStore

D = Decimal
NOW = dt.datetime(2026, 11, 25, 12, tzinfo=dt.UTC)  # a Wednesday
TODAY = NOW.date()
#: The day the tests put their incidents on.
INCIDENT = TODAY - dt.timedelta(days=5)
STEADY = {"proj_a": D(10), "proj_b": D(20)}
MODEL = "gpt-4o-mini-2024-07-18"


@pytest.fixture
def state(tmp_path: Path) -> Iterator[tuple[Ledger, UsageStore]]:
    conn = open_state(tmp_path / "state.sqlite3")
    ledger = Ledger(conn)
    ledger.save_projects([Project("proj_a", "Agent A"), Project("proj_b", "Batch B")], NOW)
    yield ledger, UsageStore(conn)
    conn.close()


def fill(ledger: Ledger, days: int = 45, changed: Mapping[tuple[dt.date, str], Decimal] | None = None) -> None:
    """The steady spend on each of the `days` days before today, with some (day, project) amounts changed."""
    dates = [TODAY - dt.timedelta(days=n) for n in range(days, 0, -1)]
    rows = [
        CostRow(day, pid, None, (changed or {}).get((day, pid), amount))
        for day in dates
        for pid, amount in STEADY.items()
    ]
    ledger.replace_days(dates, rows, NOW)


def fill_usage(usage: UsageStore, output_tokens: Mapping[int, int], days: int = 12) -> None:
    """A million output tokens an hour for proj_a over the `days` days before today, some hours changed."""
    first = day_start(TODAY) - days * 86_400
    hours = list(range(first, day_start(TODAY), HOUR))
    rows = [UsageRow(h, "proj_a", MODEL, "completions", 0, 0, output_tokens.get(h, 1_000_000), 10) for h in hours]
    usage.replace_hours("completions", hours, rows, PriceBook().estimate)


def backtest(ledger: Ledger, policy: AlertPolicy, usage: UsageStore | None = None, days: int = 14) -> Backtest:
    return run_backtest(ledger, usage, policy, days=days, now=NOW)


def found(result: Backtest) -> set[tuple[dt.date, int | None, str, str]]:
    return {(s.day, s.hour, s.alert.rule, s.alert.subject_id) for s in result.sent}


def test_a_spike_on_one_day_is_found_and_normal_days_are_silent(state: tuple[Ledger, UsageStore]) -> None:
    """A project at 5x its steady spend on one day is one spike message that day (the organization's total
    spikes with it, but not without that project: no second message), and no other day of the 14 sends anything."""
    ledger, _ = state
    fill(ledger, changed={(INCIDENT, "proj_a"): D(50)})
    result = backtest(ledger, AlertPolicy())
    assert found(result) == {(INCIDENT, None, "spike", "proj_a")}
    assert len(result.days) == 14 and result.skipped == [] and result.hours == 0
    spike = next(s.alert for s in result.sent if s.alert.subject_id == "proj_a")
    assert (spike.subject_name, spike.value, spike.threshold) == ("Agent A", D(50), D(15))


@pytest.mark.parametrize(
    "policy",
    [
        AlertPolicy(organization=False, projects={"proj_a": ProjectPolicy(mute=True)}),
        AlertPolicy(organization=False, projects={"Agent A": ProjectPolicy(mute=True)}),
        AlertPolicy(organization=False, exclude=["Agent *"]),
        AlertPolicy(organization=False, include=["proj_b"]),
    ],
    ids=["mute-by-id", "mute-by-name", "exclude", "include-other"],
)
def test_a_muted_or_filtered_project_is_silent(state: tuple[Ledger, UsageStore], policy: AlertPolicy) -> None:
    """Mute (by id or name) and include/exclude globs of the current policy keep a spiking project silent."""
    ledger, _ = state
    fill(ledger, changed={(INCIDENT, "proj_a"): D(50)})
    assert backtest(ledger, policy).sent == []


def test_budget_rules_send_once_per_day_they_are_over(state: tuple[Ledger, UsageStore]) -> None:
    """The organization's daily budget and a project's own override each send one message on the day over them."""
    ledger, _ = state
    fill(ledger, changed={(INCIDENT, "proj_a"): D(50)})
    policy = AlertPolicy(daily_budget_usd=D(60), projects={"proj_a": ProjectPolicy(daily_budget_usd=D(40))})
    budget = [s.alert for s in backtest(ledger, policy).sent if s.alert.rule == "daily_budget"]
    assert {(a.subject_id, a.value, a.threshold) for a in budget} == {
        ("organization", D(70), D(60)),
        ("proj_a", D(50), D(40)),
    }


def test_a_runaway_escalation_is_another_message(state: tuple[Ledger, UsageStore]) -> None:
    """Hour by hour: a runaway is one message, one more when its rate reaches 2x the rate sent, none below that, and
    one that it is over the hour it stops, as the live cycle's incidents say (the old copy of the decision sent no
    end: it had no incidents)."""
    ledger, usage = state
    fill(ledger)
    start = day_start(INCIDENT)
    fill_usage(usage, {start + 10 * HOUR: 20_000_000, start + 11 * HOUR: 50_000_000, start + 12 * HOUR: 60_000_000})
    result = backtest(ledger, AlertPolicy(), usage)
    assert [(s.day, s.hour, s.alert.rule, s.alert.level, s.escalation) for s in result.sent] == [
        (INCIDENT, 10, "runaway", "firing", False),
        (INCIDENT, 11, "runaway", "firing", True),
        (INCIDENT, 13, "runaway", "resolved", False),
    ]
    assert {s.alert.since for s in result.sent} == {INCIDENT}
    assert result.hours > 0
    rates = [s.alert.value for s in result.sent]
    assert rates[1] >= 2 * rates[0] and rates[0] >= AlertPolicy().runaway_min_usd


def test_a_spike_is_folded_into_a_runaway_open_at_the_day_end(state: tuple[Ledger, UsageStore]) -> None:
    """One incident, one message: the day's spike of a project running away in the last hour is not sent; the
    runaway's end follows the next hour, on the next day, keyed by the day it opened."""
    ledger, usage = state
    fill(ledger, changed={(INCIDENT, "proj_a"): D(50)})
    fill_usage(usage, {day_start(INCIDENT) + 23 * HOUR: 20_000_000})
    result = backtest(ledger, AlertPolicy(organization=False), usage)
    assert found(result) == {
        (INCIDENT, 23, "runaway", "proj_a"),
        (INCIDENT + dt.timedelta(days=1), 0, "runaway", "proj_a"),
    }
    assert [(s.alert.level, s.alert.since) for s in result.sent] == [("firing", INCIDENT), ("resolved", INCIDENT)]


def test_days_without_their_baseline_window_are_skipped(state: tuple[Ledger, UsageStore]) -> None:
    """Days whose baseline window is not in the ledger are not judged, rather than every project looking new."""
    ledger, _ = state
    fill(ledger, days=20)  # weekdays have their seven weekdays; weekend days lack some of their seven weekend days
    result = backtest(ledger, AlertPolicy())
    assert result.sent == []
    assert sorted(result.skipped + result.days) == [TODAY - dt.timedelta(days=n) for n in range(14, 0, -1)]
    assert TODAY - dt.timedelta(days=1) in result.days  # a Tuesday: its seven weekdays go back nine days
    assert TODAY - dt.timedelta(days=14) in result.skipped  # a Wednesday whose seventh weekday is 23 days back
    assert TODAY - dt.timedelta(days=3) in result.skipped  # a Sunday: seven weekend days go back four weeks
    table = render_table(result, width=120)
    assert "Nothing would have been sent." in table and "Not judged, as the state file lacks" in table
    assert f"{TODAY - dt.timedelta(days=14)} to" in table  # consecutive skipped days shown as a range


def test_json_and_table_list_each_message_and_the_counts(state: tuple[Ledger, UsageStore]) -> None:
    """JSON has day, hour, rule, ids, names, exact decimal strings and counts; the table the same rows in dollars."""
    ledger, _ = state
    fill(ledger, changed={(INCIDENT, "proj_a"): D("50.125")})
    result = backtest(ledger, AlertPolicy())
    document = json.loads(render_json(result))
    assert document["alerts"][0] == {
        "day": INCIDENT.isoformat(),
        "hour": None,
        "rule": "spike",
        "project_id": "proj_a",
        "project": "Agent A",
        "value": "50.125",
        "threshold": "15",
        "level": "firing",
        "escalation": False,
    }
    assert document["counts"] == {"by_rule": {"spike": 1}, "by_project": {"proj_a": 1}}
    table = render_table(result, width=120)
    assert "Agent A" in table and "$50.13" in table and "$15.00" in table and "Agent A (proj_a)" in table
    assert "14 days judged" in table


def test_a_runaway_across_midnight_is_what_the_live_cycle_sends(
    state: tuple[Ledger, UsageStore], tmp_path: Path
) -> None:
    """A runaway from 22:00 to 01:00 is one message and its end, in the backtest as in the live cycle (the alerter
    with its state file, hour by hour over the same estimates): the old copy of the decision keyed its memory by the
    current day and said the runaway again after midnight, with no end."""
    ledger, usage = state
    fill(ledger)
    start = day_start(INCIDENT)
    fill_usage(usage, {start + h * HOUR: 20_000_000 for h in (22, 23, 24, 25)})
    policy = AlertPolicy(organization=False)
    replayed = [
        (s.day, s.hour, s.alert.rule, s.alert.level, s.alert.since, s.escalation)
        for s in backtest(ledger, policy, usage).sent
    ]
    next_day = INCIDENT + dt.timedelta(days=1)
    assert replayed == [
        (INCIDENT, 22, "runaway", "firing", INCIDENT, False),
        (next_day, 2, "runaway", "resolved", INCIDENT, False),
    ]
    live_conn = open_state(tmp_path / "live.sqlite3")
    clock = FrozenClock(NOW)
    alerter = Alerter(
        policy=policy,
        notifications=Notifications(live_conn, clock),
        notifier=LogNotifier(logging.getLogger(__name__)),
        clock=clock,
    )
    names = {pid: project.name for pid, project in ledger.projects().items()}
    live = []
    for hour in range(20, 30):  # the end of each hour, as a cycle then judges it (7 days of usage history)
        at = dt.datetime.fromtimestamp(start + hour * HOUR, dt.UTC) + dt.timedelta(minutes=59, seconds=59)
        clock.current = at
        outcome = alerter.decide(None, build_estimates(usage, at, history_days=7), names, at.date())
        alerter.queue(at.date(), at, outcome, MessageInputs(), names)
        live += [
            (at.date(), at.hour, d.alert.rule, d.alert.level, d.alert.since, d.escalation) for d in outcome.decisions
        ]
    live_conn.close()
    assert live == replayed
