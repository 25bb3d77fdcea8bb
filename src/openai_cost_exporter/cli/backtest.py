"""`backtest`: the current alert policy replayed over the stored history, and what it would have sent.

Offline: the ledger and the usage store only, never the API. Each closed UTC day is judged as a cycle at
23:59:59 of it would judge it, through the cycle's own functions (`build_snapshot`, alerter.py's figures, the
rules), and what counts as sent is the live cycle's own decision (`rules.decision.decide`: incidents, no spam,
escalations), its state kept in memory from one judged moment to the next. Where the usage store holds the hours,
hour by hour too: `build_estimates` at the end of each hour and the runaway rule; at the day's end the runaway rule
and the daily rules are judged together, as in a cycle.

Only the ledger's costs are daily, so the daily rules are judged once, at the day's end: a spike seen in the
morning and gone by the evening (against the by-this-hour baseline) is not replayed.

The daily rules judge a day only when the ledger holds it and its whole baseline window: a day missing from the
state would count as no spend and make every project look new (a cycle always reads that window first). Usage
is kept for the runaway rule's history window only (estimates.py prunes the rest), so an hour of the past has
less history stored before it than a cycle had: it is judged over the whole days stored before it, up to the
window, and not at all with fewer than MIN_HISTORY_DAYS (too few for a usual of that hour).
"""

from __future__ import annotations

import datetime as dt
import io
import json
from collections import Counter
from dataclasses import dataclass

from rich import box
from rich.console import Console
from rich.table import Table

from openai_cost_exporter.alerts.alerter import organization_figures, project_figures
from openai_cost_exporter.cli.report import DEFAULT_WIDTH, NAME_MAX, format_exact, safe_name
from openai_cost_exporter.core import defaults
from openai_cost_exporter.core.models import DAY, day_start, days_between
from openai_cost_exporter.core.money import usd
from openai_cost_exporter.figures.baselines import same_kind_days
from openai_cost_exporter.figures.estimates import HOUR, MIN_HISTORY_DAYS, build_estimates
from openai_cost_exporter.figures.snapshot import PAGE_DAYS, DayTotals, build_snapshot
from openai_cost_exporter.figures.spend_limits import limit_figures
from openai_cost_exporter.rules import Alert, AlertPolicy, RunawayFigures
from openai_cost_exporter.rules.decision import AlertState, Figures, decide
from openai_cost_exporter.store.ledger import Ledger
from openai_cost_exporter.store.usage_store import UsageStore

DAY_SECONDS = 86_400
#: The last hour of a UTC day: its runaways are judged together with the daily rules.
LAST_HOUR = 23
_DAY_END = dt.time(23, 59, 59)
_HOUR_END = dt.timedelta(minutes=59, seconds=59)


@dataclass(frozen=True, slots=True)
class SentAlert:
    """One message the policy would have sent."""

    day: dt.date
    hour: int | None  # the hour judged (runaway); None for the daily rules, judged at the day's end
    alert: Alert
    escalation: bool


@dataclass(frozen=True, slots=True)
class Backtest:
    """What a backtest judged and found."""

    days: list[dt.date]  # judged by the daily rules, oldest first
    skipped: list[dt.date]  # not judged by them: the day or part of its baseline window is not in the ledger
    hours: int  # hours judged by the runaway rule
    sent: list[SentAlert]


@dataclass(frozen=True, slots=True)
class _History:
    policy: AlertPolicy
    totals: DayTotals
    names: dict[str, str]
    usage: UsageStore | None
    hours: dict[int, int]  # start (Unix seconds) of each hour the runaway rule judges -> its days of history


def run_backtest(
    ledger: Ledger,
    usage: UsageStore | None,
    policy: AlertPolicy,
    *,
    days: int,
    now: dt.datetime,
    history_days: int = defaults.USAGE_HISTORY_DAYS,
) -> Backtest:
    """Judge the `days` closed UTC days before `now`'s day with `policy`; usage None judges no hour."""
    today = now.date()
    first = today - dt.timedelta(days=days)
    # As a cycle reads: the baseline window, or the page's days, and the month start (the forecast's pace).
    start = min(first.replace(day=1), first - dt.timedelta(days=max(policy.baseline_days, PAGE_DAYS)))
    fetched = ledger.fetched_days(start, today)
    judged = {day for day in days_between(first, today) if _covered(day, fetched, policy.baseline_days)}
    hours = _usage_hours(usage, first, today, history_days) if usage is not None else {}
    names = ledger.names()
    history = _History(policy, ledger.project_totals(start, today), names, usage, hours)
    state = AlertState()
    sent = []
    for day in days_between(first, today):
        for hour, figures in _day_figures(history, day, daily=day in judged):
            outcome = decide(figures, state, policy, day, names)
            state = outcome.state
            sent += [SentAlert(day, _hour(hour, d.alert), d.alert, d.escalation) for d in outcome.decisions]
    skipped = [day for day in days_between(first, today) if day not in judged]
    return Backtest(days=sorted(judged), skipped=skipped, hours=len(hours), sent=sent)


def _covered(day: dt.date, fetched: dict[dt.date, dt.datetime], baseline_days: int) -> bool:
    """The day and every day its baseline reads (baselines.same_kind_days) are in the ledger."""
    return day in fetched and all(d in fetched for d in same_kind_days(day, baseline_days))


def _usage_hours(usage: UsageStore, first: dt.date, end: dt.date, history_days: int) -> dict[int, int]:
    """The hours of [first, end) with usage, each with the whole days of usage stored before it (up to
    `history_days`), leaving out those with fewer than MIN_HISTORY_DAYS."""
    starts = set(usage.hours(day_start(first) - history_days * DAY_SECONDS - HOUR, day_start(end)))
    if not starts:
        return {}
    earliest = min(starts)
    hours = {}
    for start in sorted(start for start in starts if start >= day_start(first)):
        days = min(history_days, (start - HOUR - earliest) // DAY_SECONDS)  # the hour before each day's too
        if days >= MIN_HISTORY_DAYS:
            hours[start] = days
    return hours


def _day_figures(history: _History, day: dt.date, *, daily: bool) -> list[tuple[int, Figures]]:
    """What a cycle at the end of each hour of the day judges: the runaway figures of each hour with usage, and at
    the day's end (`daily`) the billed figures too, with the last hour's runaway figures."""
    found: list[tuple[int, Figures]] = []
    for hour in range(LAST_HOUR + 1):
        start = day_start(day) + hour * HOUR
        runaways = None
        if history.usage is not None and start in history.hours:
            at = dt.datetime.fromtimestamp(start, dt.UTC) + _HOUR_END
            runaways = _runaway_figures(history, history.usage, at, history.hours[start])
        if hour == LAST_HOUR and daily:
            found.append((hour, _daily_figures(history, day, runaways)))
        elif runaways is not None:
            found.append((hour, Figures(runaways=runaways)))
    return found


def _hour(hour: int, alert: Alert) -> int | None:
    """The hour a message is listed at: the runaway rule's hour, None for the daily rules (the day's end)."""
    return hour if alert.rule == "runaway" else None


def _runaway_figures(history: _History, usage: UsageStore, at: dt.datetime, days: int) -> dict[str, RunawayFigures]:
    estimates = build_estimates(usage, at, history_days=days)
    return {figures.subject_id: figures for figures in estimates.runaway_figures(history.names)}


def _daily_figures(history: _History, day: dt.date, runaways: dict[str, RunawayFigures] | None) -> Figures:
    """The figures of the snapshot of 23:59:59 of `day` (later days left out, as they were not known yet)."""
    totals = {d: projects for d, projects in history.totals.items() if d <= day}
    at = dt.datetime.combine(day, _DAY_END, dt.UTC)
    snapshot = build_snapshot(now=at, names=history.names, totals=totals, baseline_days=history.policy.baseline_days)
    return Figures(
        projects=project_figures(snapshot),
        organization=organization_figures(snapshot),
        limits=limit_figures(snapshot),
        runaways=runaways,
    )


# ---- rendering ------------------------------------------------------------------------------------------


def counts(result: Backtest) -> tuple[dict[str, int], dict[str, int]]:
    """Messages per rule and per subject id, most first."""
    by_rule = Counter(sent.alert.rule for sent in result.sent)
    by_project = Counter(sent.alert.subject_id for sent in result.sent)
    return dict(by_rule.most_common()), dict(by_project.most_common())


def render_json(result: Backtest) -> str:
    """Every message as an object with exact decimal strings, then the counts, and the days not judged."""
    by_rule, by_project = counts(result)
    document = {
        "alerts": [
            {
                "day": sent.day.isoformat(),
                "hour": sent.hour,
                "rule": sent.alert.rule,
                "project_id": sent.alert.subject_id,
                "project": sent.alert.subject_name,
                "value": format_exact(sent.alert.value),
                "threshold": format_exact(sent.alert.threshold),
                "level": sent.alert.level,
                "escalation": sent.escalation,
            }
            for sent in result.sent
        ],
        "counts": {"by_rule": by_rule, "by_project": by_project},
        "skipped_days": [day.isoformat() for day in result.skipped],
    }
    return json.dumps(document, ensure_ascii=False, indent=2) + "\n"


def render_table(result: Backtest, *, width: int | None = None) -> str:
    """The messages, one row each, then the counts per rule and per project, then what was judged."""
    out = io.StringIO()
    console = Console(
        file=out,
        width=width or DEFAULT_WIDTH,
        color_system=None,
        markup=False,
        emoji=False,
        highlight=False,
        _environ={},  # as report.py: COLUMNS or NO_COLOR in the environment must not change the text
    )
    if result.sent:
        console.print(_alerts_table(result))
        by_rule, by_project = counts(result)
        console.print(_counts_table("Rule", by_rule))
        console.print(_counts_table("Project", _named(result, by_project)))
    else:
        console.print("Nothing would have been sent.")
    console.print(_summary(result))
    return "\n".join(row.rstrip() for row in out.getvalue().splitlines()) + "\n"


def _alerts_table(result: Backtest) -> Table:
    table = Table(box=box.SIMPLE_HEAD)
    # Narrow terminals fold the ids and names; the day, hour and figures stay whole.
    for header in ("Day", "Hour"):
        table.add_column(header, no_wrap=True)
    table.add_column("Rule", overflow="fold")
    table.add_column("Project ID", overflow="fold", min_width=12)
    table.add_column("Project", max_width=NAME_MAX, overflow="fold", min_width=12)
    table.add_column("Value", justify="right", no_wrap=True)
    table.add_column("Threshold", justify="right", no_wrap=True)
    for sent in result.sent:
        alert = sent.alert
        per_hour = "/h" if alert.rule == "runaway" else ""
        rule = alert.rule + ("" if alert.level == "firing" else f" {alert.level}")
        table.add_row(
            sent.day.isoformat(),
            "—" if sent.hour is None else f"{sent.hour:02d}:00",
            rule + (" (escalation)" if sent.escalation else ""),
            alert.subject_id,
            safe_name(alert.subject_name),
            usd(alert.value) + per_hour,
            usd(alert.threshold) + per_hour,
        )
    return table


def _counts_table(header: str, figures: dict[str, int]) -> Table:
    table = Table(box=box.SIMPLE_HEAD)
    table.add_column(header, overflow="fold")
    table.add_column("Messages", justify="right")
    for name, count in figures.items():
        table.add_row(name, str(count))
    return table


def _named(result: Backtest, by_project: dict[str, int]) -> dict[str, int]:
    names = {sent.alert.subject_id: sent.alert.subject_name for sent in result.sent}
    return {
        f"{safe_name(names[pid])} ({pid})" if names[pid] != pid else pid: count for pid, count in by_project.items()
    }


def _summary(result: Backtest) -> str:
    if not result.days:
        judged = "No day judged by the daily rules"
    else:
        judged = f"{len(result.days)} days judged by the daily rules ({result.days[0]} to {result.days[-1]})"
    text = f"{judged}, {result.hours} hours by the runaway rule (usage kept in the state file)."
    if result.skipped:
        text += f" Not judged, as the state file lacks the day or its baseline window: {_spans(result.skipped)}."
    return text


def _spans(days: list[dt.date]) -> str:
    """Consecutive days as ranges: `2026-11-01 to 2026-11-07, 2026-11-12`."""
    spans: list[list[dt.date]] = []
    for day in days:
        if spans and spans[-1][-1] + DAY == day:
            spans[-1].append(day)
        else:
            spans.append([day])
    return ", ".join(str(s[0]) if len(s) == 1 else f"{s[0]} to {s[-1]}" for s in spans)
