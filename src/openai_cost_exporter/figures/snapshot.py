"""The figures of one moment, computed from the ledger: what /metrics, the push, the page and the alerts show.

A snapshot is immutable and replaced whole at the end of a cycle, so a scrape never sees half a cycle
(unlike `Gauge.clear()` followed by a slow refill).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from dataclasses import dataclass, field
from decimal import Decimal

from openai_cost_exporter.core.models import ZERO, ApiKey, SpendLimit
from openai_cost_exporter.figures.baselines import (
    by_this_hour,
    is_known,
    pace_forecast,
    recent_pace,
    spread,
    usual_day,
)

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
    baseline: Mapping[str, Decimal]  # what the project usually has spent by now (baselines.py): the spike's measure
    month_to_date: Mapping[str, Decimal]
    forecast: Mapping[str, Decimal]
    history: DayTotals  # the last PAGE_DAYS days, today included
    usual: Mapping[str, Decimal] = field(default_factory=dict)  # the usual full day (median of its kind)
    spread: Mapping[str, Decimal] = field(default_factory=dict)  # how much the day usually varies, by now
    line_items: Mapping[tuple[str, str], Decimal] | None = None  # today, when line items are collected
    pace: Mapping[str, Decimal] = field(default_factory=dict)  # USD per day: the mean of the last 7 closed days
    # Today by (project_id, api_key_id), keys beyond the cap summed as "other" (api_keys.py); None: not collected
    keys: Mapping[tuple[str, str], Decimal] | None = None
    key_names: Mapping[str, ApiKey] = field(default_factory=dict)  # every key listed, by id
    spend_limits: Mapping[str | None, SpendLimit] = field(default_factory=dict)  # by project id; None: organization
    # Whether the history is long enough for a usual day (baselines.MIN_KNOWN_DAYS); if not, `baseline` and
    # `spread` are empty and no spike is judged: a young organization's projects are not all "new spend".
    baseline_known: bool = True

    @property
    def project_ids(self) -> list[str]:
        """Every project with spend today, in the baseline window or this month, sorted by id."""
        return sorted(set(self.today) | set(self.baseline) | set(self.month_to_date))

    def name(self, project_id: str) -> str:
        return self.names.get(project_id, project_id)

    def total(self, figures: Mapping[str, Decimal]) -> Decimal:
        return sum(figures.values(), ZERO)


def baseline(totals: DayTotals, today: dt.date, days: int) -> dict[str, Decimal]:
    """The usual full day of each project before `today` (baselines.usual_day: the median of its kind of day)."""
    return usual_day(totals, today, days)


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
    day_shares: Mapping[str, Decimal] | None = None,
    keys: Mapping[tuple[str, str], Decimal] | None = None,
    key_names: Mapping[str, ApiKey] | None = None,
    spend_limits: Mapping[str | None, SpendLimit] | None = None,
) -> CostSnapshot:
    """Compute every figure of `now`'s UTC day from daily totals (which must cover month start and baseline);
    `day_shares` (from hourly usage) scale the usual day to what is usually spent by now."""
    # An aware time in another zone would otherwise pick that zone's calendar day; naive means UTC.
    now = now.replace(tzinfo=dt.UTC) if now.tzinfo is None else now.astimezone(dt.UTC)
    today = now.date()
    mtd = month_to_date(totals, today)
    known = is_known(totals, today, baseline_days)
    usual = usual_day(totals, today, baseline_days) if known else {}
    first_page_day = today - dt.timedelta(days=PAGE_DAYS - 1)
    return CostSnapshot(
        taken_at=now,
        day=today,
        names=dict(names),
        today=dict(totals.get(today, {})),
        baseline=by_this_hour(usual, day_shares),
        usual=usual,
        spread=by_this_hour(spread(totals, today, baseline_days) if known else {}, day_shares),
        month_to_date=mtd,
        forecast=pace_forecast(totals, now, mtd),
        history={day: dict(projects) for day, projects in totals.items() if day >= first_page_day},
        line_items=dict(line_items) if line_items is not None else None,
        pace=recent_pace(totals, today, mtd),
        keys=dict(keys) if keys is not None else None,
        key_names=dict(key_names or {}),
        spend_limits=dict(spend_limits or {}),
        baseline_known=known,
    )
