"""The figures of one moment, computed from the ledger: what /metrics, the push, the page and the alerts show.

A snapshot is immutable and replaced whole at the end of a cycle, so a scrape never sees half a cycle
(unlike `Gauge.clear()` followed by a slow refill).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from dataclasses import dataclass
from decimal import Decimal

from openai_cost_exporter.models import ZERO
from openai_cost_exporter.rules import month_forecast

DayTotals = Mapping[dt.date, Mapping[str, Decimal]]

#: Days of history kept in a snapshot for the spend page.
PAGE_DAYS = 30


@dataclass(frozen=True, slots=True)
class CostSnapshot:
    """Per-project figures of the current UTC day, its baseline and its month."""

    taken_at: dt.datetime
    day: dt.date
    names: Mapping[str, str]
    today: Mapping[str, Decimal]
    baseline: Mapping[str, Decimal]
    month_to_date: Mapping[str, Decimal]
    forecast: Mapping[str, Decimal]
    history: DayTotals  # the last PAGE_DAYS days, today included
    line_items: Mapping[tuple[str, str], Decimal] | None = None  # today, when line items are collected

    @property
    def project_ids(self) -> list[str]:
        """Every project with spend today, in the baseline window or this month, sorted by id."""
        return sorted(set(self.today) | set(self.baseline) | set(self.month_to_date))

    def name(self, project_id: str) -> str:
        return self.names.get(project_id, project_id)

    def total(self, figures: Mapping[str, Decimal]) -> Decimal:
        return sum(figures.values(), ZERO)


def baseline(totals: DayTotals, today: dt.date, days: int) -> dict[str, Decimal]:
    """Mean daily cost of each project over the `days` complete UTC days before `today`; no spend counts as 0."""
    window = [today - dt.timedelta(days=n) for n in range(1, days + 1)]
    sums: dict[str, Decimal] = {}
    for day in window:
        for project_id, amount in totals.get(day, {}).items():
            sums[project_id] = sums.get(project_id, ZERO) + amount
    return {project_id: amount / days for project_id, amount in sums.items()} if days else {}


def month_to_date(totals: DayTotals, today: dt.date) -> dict[str, Decimal]:
    """Cost of each project from the 1st of today's UTC month to today so far."""
    sums: dict[str, Decimal] = {}
    for day, projects in totals.items():
        if day.year == today.year and day.month == today.month and day <= today:
            for project_id, amount in projects.items():
                sums[project_id] = sums.get(project_id, ZERO) + amount
    return sums


def build_snapshot(
    now: dt.datetime,
    names: Mapping[str, str],
    totals: DayTotals,
    *,
    baseline_days: int,
    line_items: Mapping[tuple[str, str], Decimal] | None = None,
) -> CostSnapshot:
    """Compute every figure of `now`'s UTC day from daily totals (which must cover month start and baseline)."""
    # An aware time in another zone would otherwise pick that zone's calendar day; naive means UTC.
    now = now.replace(tzinfo=dt.UTC) if now.tzinfo is None else now.astimezone(dt.UTC)
    today = now.date()
    mtd = month_to_date(totals, today)
    first_page_day = today - dt.timedelta(days=PAGE_DAYS - 1)
    return CostSnapshot(
        taken_at=now,
        day=today,
        names=dict(names),
        today=dict(totals.get(today, {})),
        baseline=baseline(totals, today, baseline_days),
        month_to_date=mtd,
        forecast={project_id: month_forecast(amount, now) for project_id, amount in mtd.items()},
        history={day: dict(projects) for day, projects in totals.items() if day >= first_page_day},
        line_items=dict(line_items) if line_items is not None else None,
    )
