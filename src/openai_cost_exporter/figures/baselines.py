"""What a project usually spends: the baselines the spike rule and the forecast stand on (pure).

- The usual day is the median of the project's daily totals over the last `baseline_days` days of the same kind
  as the day judged (weekdays for a weekday, weekend days for a weekend day, up to four weeks back). A median of
  the same kind of day keeps a quiet weekend out of a Tuesday's baseline: with a 7-day mean, an ordinary weekday
  after a quiet weekend looked like a 1.6x spike. Days before the organization's first day of spend are unknown,
  not $0: with fewer than MIN_KNOWN_DAYS known days, or none of today's kind, there is no usual day at all, and a
  kind of day with fewer than MIN_KIND_DAYS known days of its own (a young organization's first weekends) reads
  the recent days of any kind, scaled by the project's ratio of the two kinds. Its spread (a robust standard deviation)
  says how much the project's day usually varies: the spike rule also wants today above the usual day plus three
  spreads, so a noisy project's ordinary day is not a spike.
- By this hour: with hourly usage history, the usual day times the share of its spend the project usually has
  done by this time of the day (estimates.py `day_shares`), so a morning spike is seen in the morning; without
  usage access, the whole day (the comparison is then with a full day).
- The month-end forecast: month to date plus the recent daily pace (the mean of the last closed days) for the
  rest of the month, rather than a linear stretch of the first hours of the month.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Mapping
from decimal import Decimal

from openai_cost_exporter.core.models import DAY, next_month
from openai_cost_exporter.core.money import ZERO
from openai_cost_exporter.rules.runaway import median

DayTotals = Mapping[dt.date, Mapping[str, Decimal]]
#: Closed days whose mean is the recent pace of the forecast.
PACE_DAYS = 7
#: How far back a baseline looks for days of its kind (four weeks: seven weekend days for a 7-day baseline).
LOOKBACK_DAYS = 28
MAD_TO_SIGMA = Decimal("1.4826")
_WEEKEND = 5  # date.weekday() of Saturday
#: Fewest complete days of history (from the organization's first day of spend) for a usual day at all: with
#: fewer, what a project usually spends is unknown, and the spike rule does not judge (a day-old organization).
MIN_KNOWN_DAYS = 3
#: Fewest known days of today's kind for a usual day of that kind alone.
MIN_KIND_DAYS = 3


def lookback(days: int) -> int:
    """How many days before today a baseline of `days` days of the same kind may read: what to load for it."""
    return max(days, LOOKBACK_DAYS)


def same_kind_days(today: dt.date, days: int) -> list[dt.date]:
    """The `days` most recent complete days of the same kind as `today` (weekdays, or weekend days), looking back
    at most `lookback(days)` days: a weekend day's baseline then holds several weekends, not one."""
    window = [today - dt.timedelta(days=n) for n in range(1, lookback(days) + 1)]
    alike = [day for day in window if is_weekend(day) == is_weekend(today)]
    return alike[:days] or window[:days]


def known_days(totals: DayTotals, today: dt.date, days: int) -> list[dt.date]:
    """The complete days before `today` a baseline may read, newest first: up to `lookback(days)` back, and none
    before the organization's first day of spend in `totals` (before it, what was spent is unknown, not $0)."""
    spent = [day for day, projects in totals.items() if day < today and any(projects.values())]
    if not spent:
        return []
    first = min(spent)
    return [day for n in range(1, lookback(days) + 1) if (day := today - dt.timedelta(days=n)) >= first]


def is_known(totals: DayTotals, today: dt.date, days: int) -> bool:
    """Whether the history holds enough days (MIN_KNOWN_DAYS) for a usual day at all, one of today's kind among
    them: a young organization's first weekend day has no usual yet (its weekdays say nothing of a weekend-heavy
    project's Saturday); from its second, the first scales the weekdays."""
    known = known_days(totals, today, days)
    return len(known) >= MIN_KNOWN_DAYS and any(is_weekend(day) == is_weekend(today) for day in known)


def usual_days(totals: DayTotals, today: dt.date, days: int) -> dict[str, list[Decimal]]:
    """The days each project's usual day is the median of, as amounts of `today`'s kind.

    The `days` most recent known days of the same kind as today; with fewer than MIN_KIND_DAYS of them (a young
    organization's first weekend), the `days` most recent known days of any kind, those of the other kind scaled
    by the project's own ratio of the two kinds (the median of each) once it has days of both, and left out when the
    project does not spend on the other kind. A day without spend counts as 0; a day before the history, not at
    all."""
    known = known_days(totals, today, days)
    alike = [day for day in known if is_weekend(day) == is_weekend(today)]
    projects = {pid for day in known for pid, amount in totals.get(day, {}).items() if amount}
    if len(alike) >= MIN_KIND_DAYS:
        return {pid: [_amount(totals, day, pid) for day in alike[:days]] for pid in projects}
    other = [day for day in known if is_weekend(day) != is_weekend(today)]
    result = {}
    for pid in projects:
        others = [_amount(totals, d, pid) for d in other]
        if alike and not median(others):  # it does not spend on the other kind: those days say nothing of today's
            result[pid] = [_amount(totals, d, pid) for d in alike]
            continue
        scale = _kind_ratio([_amount(totals, d, pid) for d in alike], others)
        result[pid] = [_amount(totals, d, pid) * (1 if d in alike else scale) for d in known[:days]]
    return result


def usual_day(totals: DayTotals, today: dt.date, days: int) -> dict[str, Decimal]:
    """The median of each project's `usual_days` (projects whose usual day is not $0)."""
    usual = {pid: median(amounts) for pid, amounts in usual_days(totals, today, days).items()}
    return {pid: amount for pid, amount in usual.items() if amount}


def spread(totals: DayTotals, today: dt.date, days: int) -> dict[str, Decimal]:
    """How much each project's day usually varies: 1.4826 x the median absolute deviation of its `usual_days`
    from their median (the standard deviation, for normal noise, without one odd day pulling it up)."""
    result = {}
    for pid, amounts in usual_days(totals, today, days).items():
        middle = median(amounts)
        if middle and (deviation := median([abs(amount - middle) for amount in amounts])):
            result[pid] = deviation * MAD_TO_SIGMA
    return result


def _kind_ratio(alike: list[Decimal], other: list[Decimal]) -> Decimal:
    """A project's median day of today's kind over its median day of the other kind; 1 while either is unknown."""
    if not alike or not other or not median(other):
        return Decimal(1)
    return median(alike) / median(other)


def _amount(totals: DayTotals, day: dt.date, pid: str) -> Decimal:
    return totals.get(day, {}).get(pid, ZERO)


def is_weekend(day: dt.date) -> bool:
    """Saturday or Sunday: the kind of day a baseline (and the runaway's usual, estimates.py) compares alike."""
    return day.weekday() >= _WEEKEND


def by_this_hour(usual: Mapping[str, Decimal], shares: Mapping[str, Decimal] | None) -> dict[str, Decimal]:
    """The usual day scaled by the share usually spent by now (the whole day where no share is known)."""
    if shares is None:
        return dict(usual)
    return {pid: amount * shares.get(pid, Decimal(1)) for pid, amount in usual.items()}


def pace_forecast(totals: DayTotals, now: dt.datetime, month_to_date: Mapping[str, Decimal]) -> dict[str, Decimal]:
    """Month to date, plus the mean of the last PACE_DAYS closed days for what is left of the UTC month.

    Today counts at least its usual pace (it is not over). A project with no closed day of spend in that window
    is projected linearly from its month to date (its pace is unknown, not zero).
    """
    today = now.date()
    days_after_today = (next_month(today) - today - DAY).days
    paces = recent_pace(totals, today, month_to_date)
    forecast: dict[str, Decimal] = {}
    for pid, mtd in month_to_date.items():
        pace = paces[pid]
        if not pace:  # no recent closed day of spend: its pace is unknown, project the month so far
            forecast[pid] = month_forecast(mtd, now)
            continue
        today_so_far = totals.get(today, {}).get(pid, ZERO)
        forecast[pid] = mtd - today_so_far + max(today_so_far, pace) + pace * days_after_today
    return forecast


def recent_pace(totals: DayTotals, today: dt.date, subjects: Iterable[str]) -> dict[str, Decimal]:
    """USD per day of each subject: the mean of the last PACE_DAYS closed days (0 without spend in them)."""
    recent = [today - dt.timedelta(days=n) for n in range(1, PACE_DAYS + 1)]
    return {pid: sum((totals.get(day, {}).get(pid, ZERO) for day in recent), ZERO) / PACE_DAYS for pid in subjects}


def month_forecast(month_to_date: Decimal, now: dt.datetime) -> Decimal:
    """Linear projection of month-to-date spend to the end of the UTC month `now` falls in."""
    now = now.replace(tzinfo=dt.UTC) if now.tzinfo is None else now.astimezone(dt.UTC)
    start = dt.datetime(now.year, now.month, 1, tzinfo=dt.UTC)
    end = dt.datetime.combine(next_month(start.date()), dt.time(), dt.UTC)
    elapsed = _microseconds(now - start)
    if elapsed == 0:  # the very first instant of the month: nothing to project from
        return month_to_date
    return month_to_date * _microseconds(end - start) / elapsed


def _microseconds(delta: dt.timedelta) -> Decimal:
    return Decimal((delta.days * 86_400 + delta.seconds) * 1_000_000 + delta.microseconds)
